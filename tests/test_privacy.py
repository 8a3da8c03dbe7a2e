"""Privacy at rest (SPEC H2, H3, G2; issue 14): ID and card checks, AES-GCM columns, the
no-key decision, reveal, and what a killed run leaves behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from custtool.cli import app
from custtool.crypto import (
    CryptoKeyError,
    TamperedError,
    decrypt_series,
    encrypt_series,
    match_keys,
    new_key,
    parse_key,
)
from custtool.normalize import bank_card_valid, id_number_valid
from custtool.pipeline import recover_leftovers
from custtool.privacy import protect_sensitive

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent

ID = "11010519491231002X"  # valid: the GB 11643 example
ID2 = "440524188001010014"  # valid
CARD = "6222600260001072444"  # valid Luhn
PHONE = "13812345678"
CUSTOMERS = f"""客户编号,姓名,手机号,身份证号,银行卡号,护照号
V001,张三,{PHONE},{ID},{CARD},E12345678
V002,李四,13987654321,{ID2},,
V003,王五,13711112222,{ID2},4111111111111112,
"""
ORDERS = f"""订单号,客户ID,手机号,下单时间,实付金额
O1,V001,{PHONE},2026-09-01,100
O2,V002,13987654321,2026-09-10,250.5
O3,V003,13711112222,2026-08-02,80
"""
FIELDS = "customers:\n  fields:\n    passport_no: {aliases: [护照号], sensitive: true}\n"
SECRETS = (ID, ID2, CARD, "E12345678")


@pytest.fixture
def key(monkeypatch):
    text = new_key()
    monkeypatch.setenv("CUSTTOOL_KEY", text)
    return parse_key(text)


def _pipeline(d: Path, report: str = "{}", extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (d / "orders.csv").write_text(ORDERS, encoding="utf-8")
    (d / "fields.yaml").write_text(FIELDS, encoding="utf-8")
    (d / "pipeline.yaml").write_text(
        "name: t\nout: out\nfields: fields.yaml\n"
        "inputs:\n  customers: [customers.csv]\n  orders: [orders.csv]\n"
        f"report: {report}\ncards:\n  format: html\n{extra}",
        encoding="utf-8",
    )
    return d / "pipeline.yaml"


def _cells_and_text(folder: Path) -> dict[str, str]:
    """Every file of a folder as text: Parquet values, xlsx XML, html/csv/json/md."""
    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix == ".parquet":
            df = pd.read_parquet(p)
            out[p.name] = "\n".join(map(str, df.to_numpy().ravel().tolist()))
        elif p.suffix == ".xlsx":
            with zipfile.ZipFile(p) as z:
                out[p.name] = "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
        elif p.is_file():
            out[p.name] = p.read_text(encoding="utf-8-sig", errors="replace")
    return out


# --------------------------------------------------------------------------- checks
def test_id_numbers_checked_by_gb11643():
    s = pd.Series([ID, "11010519491231002x", "110105194912310021", "110105491231002", "", "12"])
    # the valid example; lower-case x; a wrong check digit; an old 15-digit number; blank; short
    assert id_number_valid(s).tolist() == [True, True, False, True, False, False]
    assert id_number_valid(pd.Series(["11010519491331002X"])).tolist() == [False]  # month 13


def test_bank_cards_checked_by_luhn():
    s = pd.Series([CARD, "4111 1111 1111 1111", "4111-1111-1111-1112", "79927398713", "abc"])
    assert bank_card_valid(s).tolist() == [True, True, False, False, False]


def test_invalid_ids_and_cards_flagged_not_rejected(key, tmp_path):
    from custtool.steps import run_import

    (tmp_path / "c.csv").write_text(CUSTOMERS, encoding="utf-8")
    res = run_import(tmp_path / "c.csv", output=tmp_path / "c.parquet")
    assert res.data["totals"]["accepted"] == 3
    assert res.data["problems"] == {"bank_card_invalid": 1}  # 4111111111111112 fails Luhn
    flags = pd.read_parquet(tmp_path / "c.parquet")["_flags"].tolist()
    assert flags == ["", "", "bank_card_invalid"]
    # the rejects file never quotes the ID or card number
    assert not any(s in (tmp_path / "c_rejects.csv").read_text("utf-8-sig") for s in SECRETS)


# --------------------------------------------------------------------------- crypto
def test_round_trip_deterministic_and_keyed(key):
    s = pd.Series([ID, "", ID, CARD, None])
    enc = encrypt_series(s, key)
    assert enc[0] == enc[2] and enc[0].startswith(f"enc1:{key.id}:")
    assert enc[1] == "" and enc[4] == ""
    assert not any(ID in v or CARD in v for v in enc)
    assert decrypt_series(enc, key).tolist() == [ID, "", ID, CARD, ""]
    assert encrypt_series(enc, key).tolist() == enc.tolist()  # already encrypted: kept
    other = parse_key(new_key())
    assert encrypt_series(s, other)[0] != enc[0]  # another key, another ciphertext
    mk = match_keys(s, key)
    assert mk[0] == mk[2] != mk[3] and mk[1] == "" and len(mk[0]) == 32


def test_wrong_key_and_tampered_ciphertext_are_clear_errors(key):
    enc = encrypt_series(pd.Series([ID]), key)
    other = parse_key(new_key())
    with pytest.raises(CryptoKeyError, match=f"key id {key.id}.*has id {other.id}"):
        decrypt_series(enc, other, where="c.parquet")
    token = enc[0]
    i = len(f"enc1:{key.id}:") + 20
    flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    with pytest.raises(TamperedError, match=r"c.parquet, row 1: ciphertext does not authenticate"):
        decrypt_series(pd.Series([flipped]), key, where="c.parquet")
    with pytest.raises(CryptoKeyError, match="not a custtool key"):
        parse_key("short")


def test_key_is_never_in_repr_or_json():
    text = new_key()
    k = parse_key(text)
    assert text not in repr(k) and k.id in repr(k)
    r = runner.invoke(app, ["key", "new", "--json"])
    assert r.exit_code == 0 and set(json.loads(r.stdout)) == {"key_id", "env"}
    r = runner.invoke(app, ["key", "new", "--quiet"])
    assert r.exit_code == 0 and len(parse_key(r.stdout.strip()).id) == 8


# --------------------------------------------------------------------------- decide before writing
def test_no_key_is_exit_2_and_nothing_written(monkeypatch, tmp_path):
    monkeypatch.delenv("CUSTTOOL_KEY", raising=False)
    src = tmp_path / "c.csv"
    src.write_text(CUSTOMERS, encoding="utf-8")
    before = src.read_bytes()
    r = runner.invoke(app, ["import", str(src), "-o", str(tmp_path / "c.parquet")])
    assert r.exit_code == 2 and "Traceback" not in r.output + r.stderr
    assert "sensitive columns (id_number, bank_card)" in r.stderr and "CUSTTOOL_KEY" in r.stderr
    assert not any(s in r.stderr for s in SECRETS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"] and src.read_bytes() == before
    yaml_path = _pipeline(tmp_path / "run")
    r = runner.invoke(app, ["run", str(yaml_path), "--quiet"])
    assert r.exit_code == 2 and not (tmp_path / "run" / "out").exists()


@pytest.mark.parametrize(
    "mode, stored", [("drop", None), ("mask", "110***********002X"), ("clear", ID)]
)
def test_sensitive_choice_without_key(monkeypatch, tmp_path, mode, stored):
    monkeypatch.delenv("CUSTTOOL_KEY", raising=False)
    src = tmp_path / "c.csv"
    src.write_text(CUSTOMERS, encoding="utf-8")
    args = ["import", str(src), "-o", str(tmp_path / "c.parquet"), "--sensitive", mode, "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    privacy = json.loads(r.stdout)["privacy"]
    assert privacy == {
        "sensitive_columns": ["id_number", "bank_card"],
        "sensitive": mode,
        "key_id": None,
    }
    data = pd.read_parquet(tmp_path / "c.parquet")
    if stored is None:
        assert "id_number" not in data and "bank_card" not in data
    else:
        assert data["id_number"][0] == stored


def test_clear_choice_is_stated_in_the_run_manifest(monkeypatch, tmp_path):
    monkeypatch.delenv("CUSTTOOL_KEY", raising=False)
    yaml_path = _pipeline(tmp_path, extra="sensitive: clear\n")
    r = runner.invoke(app, ["run", str(yaml_path), "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    privacy = json.loads(r.stdout)["privacy"]
    assert privacy["sensitive"] == "clear" and privacy["key_id"] is None
    assert privacy["columns"] == {"customers": ["id_number", "bank_card", "passport_no"]}


# --------------------------------------------------------------------------- a run with a key
@pytest.fixture(scope="module")
def keyed_run(tmp_path_factory):
    """One pipeline run per role setting, with a key (each once)."""
    text = new_key()
    old = os.environ.get("CUSTTOOL_KEY")
    os.environ["CUSTTOOL_KEY"] = text
    folders = {}
    try:
        for report in ("{}", "{role: analyst}", "{role: admin, mask: false}"):
            yaml_path = _pipeline(
                tmp_path_factory.mktemp("keyed"),
                report,
                "clean:\n  keys: [phone, email, customer_id, id_number]\n",
            )
            r = runner.invoke(app, ["run", str(yaml_path), "--json", "--quiet"])
            assert r.exit_code == 0, r.output + r.stderr
            folders[report] = (Path(json.loads(r.stdout)["folder"]), json.loads(r.stdout))
    finally:
        if old is None:
            os.environ.pop("CUSTTOOL_KEY", None)
        else:
            os.environ["CUSTTOOL_KEY"] = old
    _KEY_TEXTS[id(folders)] = text
    return parse_key(text), folders


_KEY_TEXTS: dict[int, str] = {}


def _key_text(keyed_run) -> str:
    return _KEY_TEXTS[id(keyed_run[1])]


@pytest.mark.parametrize("report", ["{}", "{role: analyst}", "{role: admin, mask: false}"])
def test_no_file_of_a_run_holds_an_id_or_card_in_clear(keyed_run, report):
    key, folders = keyed_run
    folder, manifest = folders[report]
    texts = _cells_and_text(folder)
    assert {"customers.parquet", "imported_customers.parquet", "report.xlsx", "cards.html"} <= set(
        texts
    )
    assert {"manifest.json", "segment_summary.xlsx", "clean_report.xlsx"} <= set(texts)
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, (name, secret, report)
        assert os.environ.get("CUSTTOOL_KEY", "\0") not in text
    book = folder.parent / "custtool.duckdb"
    if book.exists():  # the customer book (issue 16): every table, every value
        import duckdb

        con = duckdb.connect(str(book), read_only=True)
        try:
            for (table,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
                rows = con.execute(f'SELECT * FROM "{table}"').fetchall()
                text = "\n".join(map(str, rows))
                for secret in SECRETS:
                    assert secret not in text, ("book", table, secret)
        finally:
            con.close()
    if report != "{role: admin, mask: false}":  # masked: no full phone in any export
        for name, text in texts.items():
            if not name.endswith(".parquet"):
                assert PHONE not in text, (name, report)
    assert manifest["privacy"]["key_id"] == key.id and manifest["privacy"]["sensitive"] == "encrypt"
    assert "customers" in manifest["privacy"]["columns"]
    # the data keeps them encrypted, and the key gives them back
    data = pd.read_parquet(folder / "imported_customers.parquet")
    assert data["id_number"].str.startswith("enc1:").all()
    assert decrypt_series(data["id_number"], key).tolist() == [ID, ID2, ID2]
    assert decrypt_series(data["passport_no"], key).tolist() == ["E12345678", "", ""]


def test_dedupe_links_on_the_encrypted_id(keyed_run):
    key, folders = keyed_run
    folder, _ = folders["{}"]
    data = pd.read_parquet(folder / "customers.parquet")
    ids = decrypt_series(data["id_number"], key)
    # V002 and V003 have one ID number: linked on it without the plaintext (the ciphertext
    # of a value is a keyed function of it), so one customer
    assert (ids == ID2).sum() == 1, data[["customer_id", "id_number"]]
    assert len(data) == 2


def test_reveal_admin_only_with_the_key(keyed_run, tmp_path, monkeypatch):
    key, folders = keyed_run
    folder, _ = folders["{}"]
    src = folder / "customers.parquet"
    monkeypatch.delenv("CUSTTOOL_KEY", raising=False)
    r = runner.invoke(app, ["reveal", str(src), "-o", str(tmp_path / "x.csv")])
    assert r.exit_code == 2 and "CUSTTOOL_KEY is not set" in r.stderr
    monkeypatch.setenv("CUSTTOOL_KEY", new_key())
    r = runner.invoke(app, ["reveal", str(src), "-o", str(tmp_path / "x.csv")])
    assert r.exit_code == 2 and "Traceback" not in r.output and "key id" in r.stderr
    assert not (tmp_path / "x.csv").exists()
    r = runner.invoke(app, ["reveal", str(src), "-o", str(tmp_path / "x.csv"), "--role", "analyst"])
    assert r.exit_code == 2 and "may not reveal" in r.stderr


def test_reveal_writes_the_clear_table_owner_only(tmp_path, key):
    from custtool.steps import run_import, run_reveal

    (tmp_path / "c.csv").write_text(CUSTOMERS, encoding="utf-8")
    run_import(tmp_path / "c.csv", output=tmp_path / "c.parquet")
    res = run_reveal(tmp_path / "c.parquet", output=tmp_path / "clear.csv")
    assert res.data["columns"] == ["id_number", "bank_card"] and res.data["key_id"] == key.id
    clear = pd.read_csv(tmp_path / "clear.csv", dtype=str, keep_default_na=False)
    assert clear["id_number"].tolist() == [ID, ID2, ID2] and clear["bank_card"][0] == CARD
    assert (tmp_path / "clear.csv").stat().st_mode & 0o777 == 0o600
    # a changed byte in the file is a clear error, not a traceback
    df = pd.read_parquet(tmp_path / "c.parquet")
    tok = df.at[0, "id_number"]
    df.at[0, "id_number"] = tok[:-6] + ("AAAA" if tok[-6:-2] != "AAAA" else "BBBB") + tok[-2:]
    df.to_parquet(tmp_path / "bad.parquet", index=False)
    r = runner.invoke(app, ["reveal", str(tmp_path / "bad.parquet"), "-o", str(tmp_path / "y.csv")])
    assert r.exit_code == 2 and "does not authenticate" in r.stderr
    assert "Traceback" not in r.output + r.stderr and ID not in r.stderr


def test_protect_sensitive_refuses_unknown_mode():
    df = pd.DataFrame({"id_number": [ID]})
    with pytest.raises(Exception, match="unknown --sensitive"):
        protect_sensitive(df, mode="shred")


# --------------------------------------------------------------------------- leftovers
_KILL_AT = """
import os, signal, sys
from custtool.pipeline import run_pipeline
def progress(step):
    if step == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)
run_pipeline(sys.argv[1], progress=progress)
"""

_KILL_BETWEEN_RENAMES = """
import os, signal, sys
from custtool.pipeline import run_pipeline
real = os.replace
def replace(src, dst):
    real(src, dst)
    if ".old-" in str(dst):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
run_pipeline(sys.argv[1])
"""


def _child(code: str, *args: str) -> int:
    env = {**os.environ}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, timeout=120
    )
    return proc.returncode


def test_kill_9_leaves_no_clear_copy_after_the_next_run(tmp_path, monkeypatch):
    monkeypatch.delenv("CUSTTOOL_KEY", raising=False)
    yaml_path = _pipeline(tmp_path, extra="sensitive: clear\n")  # the worst case: clear data
    out = tmp_path / "out"
    assert _child(_KILL_AT, str(yaml_path), "report") == -signal.SIGKILL
    left = [p for p in out.iterdir() if ".tmp-" in p.name]
    assert len(left) == 1 and left[0].stat().st_mode & 0o777 == 0o700  # owner only
    assert any(ID in t for t in _cells_and_text(left[0]).values())  # the clear copy it left
    r = runner.invoke(app, ["run", str(yaml_path), "--quiet"])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert [n for n in names if n != "custtool.duckdb"] == ["2026-09-10"]  # the leftover is gone


def test_kill_between_the_renames_recovers_the_earlier_run(tmp_path, monkeypatch):
    monkeypatch.delenv("CUSTTOOL_KEY", raising=False)
    yaml_path = _pipeline(tmp_path, extra="sensitive: drop\n")
    out = tmp_path / "out"
    r = runner.invoke(app, ["run", str(yaml_path), "--quiet"])
    assert r.exit_code == 0, r.output
    first = json.loads((out / "2026-09-10" / "manifest.json").read_text("utf-8"))
    assert _child(_KILL_BETWEEN_RENAMES, str(yaml_path)) == -signal.SIGKILL
    names = sorted(p.name for p in out.iterdir())
    assert "2026-09-10" not in names and any(".old-" in n for n in names)  # the crash window
    done = recover_leftovers(out)
    assert any(d.startswith("recovered 2026-09-10") for d in done)
    assert any(d.startswith("removed .2026-09-10.tmp-") for d in done)
    assert [p.name for p in out.iterdir() if p.name != "custtool.duckdb"] == ["2026-09-10"]
    again = json.loads((out / "2026-09-10" / "manifest.json").read_text("utf-8"))
    assert again["steps"] == first["steps"]  # the earlier run, not lost


def test_leftovers_of_live_processes_are_kept(tmp_path):
    live = tmp_path / f".2026-09-10.tmp-{os.getpid()}"
    live.mkdir()
    assert recover_leftovers(tmp_path) == [] and live.exists()


def test_temporary_files_are_owner_only(tmp_path):
    from custtool.atomic import atomic_path

    with atomic_path(tmp_path / "x.csv") as tmp:
        assert tmp.stat().st_mode & 0o777 == 0o600
        tmp.write_text("a\n")
    assert (tmp_path / "x.csv").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_key_rotate_re_encrypts_a_run_folder(keyed_run, tmp_path, monkeypatch):
    import shutil

    key, folders = keyed_run
    folder = tmp_path / "run"
    shutil.copytree(folders["{}"][0], folder)
    newer = new_key()
    monkeypatch.setenv("OLD_K", new_key())  # the wrong old key: nothing changes
    monkeypatch.setenv("NEW_K", newer)
    before = (folder / "customers.parquet").read_bytes()
    r = runner.invoke(
        app, ["key", "rotate", str(folder), "--old-env", "OLD_K", "--new-env", "NEW_K"]
    )
    assert r.exit_code == 2 and (folder / "customers.parquet").read_bytes() == before
    from custtool.steps import run_key_rotate

    old_text = _key_text(keyed_run)
    monkeypatch.setenv("OLD_K", old_text)
    res = run_key_rotate(folder, old_env="OLD_K", new_env="NEW_K")
    files = {f["file"]: f["cells"] for f in res.data["files"]}
    # two customers after dedupe: 2 ID numbers + 2 cards + 1 passport; imported rows: 3 + 2 + 1
    assert files["customers.parquet"] == 5 and files["imported_customers.parquet"] == 6
    new = parse_key(newer)
    data = pd.read_parquet(folder / "customers.parquet")
    assert data["id_number"].str.startswith(f"enc1:{new.id}:").all()
    assert sorted(decrypt_series(data["id_number"], new)) == [ID, ID2]
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    assert manifest["privacy"]["key_id"] == new.id
    with pytest.raises(CryptoKeyError):
        decrypt_series(data["id_number"], key)


@pytest.mark.parametrize("length", [1, 15, 16, 17, 18, 19, 32, 33, 47])
def test_batched_siv_is_cryptographys_aes_siv(length):
    """The batch computes exactly cryptography's AESSIV(key).encrypt(value, None)."""
    import numpy as np
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    from custtool.crypto import _SIV

    rng = np.random.default_rng(length)
    key = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    clear = rng.integers(0, 256, (5, length), dtype=np.uint8)
    token = _SIV(key).encrypt(clear)
    assert [bytes(r) for r in token] == [AESSIV(key).encrypt(bytes(r), None) for r in clear]
    back, ok = _SIV(key).decrypt(token)
    assert ok.all() and (back == clear).all()
    token[2, -1] ^= 1
    assert _SIV(key).decrypt(token)[1].tolist() == [True, True, False, True, True]


def test_formula_text_found_past_the_byte_pre_check():
    """neutralize_formula_text skips a column holding none of = + - @ tab CR LF (one scan of
    its bytes); a column with one such start in any row is still quoted, one with the
    characters only inside values is left as it is."""
    import pandas as pd

    from custtool.io import neutralize_formula_text

    plain = pd.Series(["张三", "北京", None] * 4, dtype="string")
    assert neutralize_formula_text(plain) is plain
    inside = pd.Series(["a-b", "x@y", "c=d"], dtype="string")
    assert neutralize_formula_text(inside).tolist() == ["a-b", "x@y", "c=d"]
    late = pd.Series(["北京"] * 5 + ['=HYPERLINK("x")', "-20", "+86 138", "@a"], dtype="string")
    out = neutralize_formula_text(late).tolist()
    assert out[:5] == ["北京"] * 5
    assert out[5:] == ['\'=HYPERLINK("x")', "-20", "'+86 138", "'@a"]
