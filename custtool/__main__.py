from custtool.cli import main

main()
