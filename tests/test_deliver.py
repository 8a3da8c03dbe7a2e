"""E-mail delivery (issue 17): subscriptions, a real SMTP server on 127.0.0.1 (aiosmtpd),
the manifest's record, re-sending, failures, masking and the password."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import socket
import time
import zipfile
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from custtool.cli import app

aiosmtpd = pytest.importorskip("aiosmtpd")
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
runner = CliRunner()
PASSWORD = "s3cret-Pa55-猫"
USER = "report@example.cn"
PHONE = re.compile(r"(?<![\d.])1[3-9]\d{9}(?!\d)")  # a full mobile number (not a decimal)


# --------------------------------------------------------------------------- the SMTP server
@dataclass
class Mailbox:
    """What the test server received: one parsed message per DATA, with its envelope."""

    messages: list = field(default_factory=list)
    refuse: set = field(default_factory=set)  # addresses answered 550
    logins: list = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted"

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == USER
            and auth_data.password.decode() == PASSWORD
        )
        self.logins.append(ok)
        return AuthResult(success=ok, handled=False)  # False: the server answers 535


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(box: Mailbox, **kw) -> Controller:
    ctl = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=box.authenticator,
        auth_require_tls=False,
        auth_required=True,
        **kw,
    )
    ctl.start()
    return ctl


@pytest.fixture
def smtp():
    box = Mailbox()
    ctl = start_server(box)
    yield box, ctl.port
    ctl.stop()


# --------------------------------------------------------------------------- run folders
@pytest.fixture
def run_dir(example_run, tmp_path) -> Path:
    """A private copy of the session's run folder (never the shared one)."""
    d, payload = example_run
    src = Path(payload["folder"])
    dst = tmp_path / "out" / src.name
    shutil.copytree(src, dst)
    return dst


def pipeline_yaml(tmp_path: Path, port: int, subscriptions: str, **smtp) -> Path:
    """A pipeline file with a deliver: section (its inputs are not read by `send`)."""
    extra = "".join(f"    {k}: {v}\n" for k, v in smtp.items())
    text = (
        "name: 月度客户分析\n"
        "inputs:\n  orders: 订单.csv\n"
        "deliver:\n"
        "  smtp:\n"
        f"    host: 127.0.0.1\n    port: {port}\n    tls: none\n    user: {USER}\n"
        "    password_env: CUSTTOOL_T_SMTP\n"
        "    from: 客户分析 <report@example.cn>\n"
        "    timeout: 5\n    retries: 2\n    backoff: 0.01\n"
        f"{extra}"
        "  subscriptions:\n" + subscriptions
    )
    p = tmp_path / "pipeline.yaml"
    p.write_text(text, encoding="utf-8")
    return p


MANAGER = (
    "    - name: 经理月报\n"
    "      to: [manager@example.cn, boss@example.cn]\n"
    "      send: [report, csv]\n"
)
OWNERS = (
    "    - name: 销售名单\n"
    "      owners: {王五: wangwu@example.cn, 赵六: zhaoliu@example.cn, 未分配: pool@example.cn}\n"
    "      send: [owner_report]\n"
)


def write_owner_workbooks(run_dir: Path) -> dict[str, Path]:
    """owners/<owner>.xlsx as the render branch writes them: each owner's customers, masked
    by the sales role (made here with the library's one masking policy)."""
    import pandas as pd

    from custtool.io import write_table
    from custtool.report.masking import mask_for_output

    customers = pd.read_parquet(run_dir / "customers.parquet")
    (run_dir / "owners").mkdir()
    out = {}
    for owner in ("王五", "赵六", ""):
        rows = customers[customers["owner"].fillna("") == owner]
        shown = mask_for_output(rows.drop(columns=["owner"]).assign(owner=owner), role="analyst")
        path = run_dir / "owners" / f"{owner or '未分配'}.xlsx"
        write_table(shown[["customer_id", "name", "phone", "owner"]], path)
        out[owner or "未分配"] = path
    return out


def send(*args, env=None):
    return runner.invoke(
        app, ["send", *map(str, args)], env={"CUSTTOOL_T_SMTP": PASSWORD, **(env or {})}
    )


def attachments(msg) -> dict[str, bytes]:
    return {part.get_filename(): part.get_payload(decode=True) for part in msg.iter_attachments()}


def text_of(name: str, data: bytes) -> str:
    """The text inside a mailed file (every XML part of an xlsx)."""
    if name.endswith(".xlsx"):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return "".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
    return data.decode("utf-8-sig", "replace")


# --------------------------------------------------------------------------- config
def test_the_deliver_section_is_checked_with_lines(tmp_path):
    from custtool.deliver import load_deliver
    from custtool.errors import ConfigError

    p = pipeline_yaml(tmp_path, 25, MANAGER)
    deliver, name = load_deliver(p)
    assert name == "月度客户分析"
    assert deliver.smtp.from_ == "客户分析 <report@example.cn>"
    assert deliver.subscriptions[0].to == ["manager@example.cn", "boss@example.cn"]
    assert deliver.subscriptions[0].mask is None  # rules/deliver.yaml: mask true

    bad = pipeline_yaml(tmp_path, 25, MANAGER.replace("[report, csv]", "[report, word]"))
    with pytest.raises(
        ConfigError,
        match=r"pipeline.yaml:18: deliver.subscriptions\[0\].send\[1\]: Input should be",
    ):
        load_deliver(bad)
    bad = pipeline_yaml(tmp_path, 25, MANAGER)
    bad.write_text(bad.read_text(encoding="utf-8").replace("tls: none", "tls: tls13"), "utf-8")
    with pytest.raises(ConfigError, match=r":8: deliver.smtp.tls"):
        load_deliver(bad)
    bad = pipeline_yaml(tmp_path, 25, MANAGER.replace("manager@example.cn", "经理"))
    with pytest.raises(ConfigError, match=r"'经理' is not an e-mail address"):
        load_deliver(bad)
    owners_and_report = OWNERS.replace("[owner_report]", "[owner_report, report]")
    with pytest.raises(ConfigError, match="owners: get only their own workbook"):
        load_deliver(pipeline_yaml(tmp_path, 25, owners_and_report))
    with pytest.raises(ConfigError, match="no deliver: section"):
        (tmp_path / "plain.yaml").write_text("inputs: {orders: a.csv}\n", encoding="utf-8")
        load_deliver(tmp_path / "plain.yaml")


def test_a_password_in_the_yaml_is_a_config_error_that_does_not_echo_it(tmp_path):
    p = pipeline_yaml(tmp_path, 25, MANAGER, password=PASSWORD)
    r = send(tmp_path, "--config", p, "--json")
    assert r.exit_code == 2
    err = json.loads(r.stdout)["error"]
    assert "deliver.smtp.password" in err["message"] and "password_env" in err["message"]
    assert ":15:" in err["message"]  # the line of the password
    assert PASSWORD not in r.stdout + r.stderr


def test_cycle_is_decided_on_the_as_of_date():
    from custtool.deliver import is_due

    assert is_due("weekly", "2026-11-02") and not is_due("weekly", "2026-11-03")  # a Monday
    assert is_due("monthly", "2026-11-01") and not is_due("monthly", "2026-10-31")
    assert is_due(None, "2026-10-30")


def test_owner_file_names_are_file_safe():
    from custtool.deliver import owner_file

    assert owner_file("刘洋") == "owners/刘洋.xlsx"
    assert owner_file('李/娜:*?"<>|\\\x07') == "owners/李娜.xlsx"
    assert owner_file("") == owner_file(None) == "owners/未分配.xlsx"


# --------------------------------------------------------------------------- sending
def test_send_mails_each_recipient_the_run_files(run_dir, tmp_path, smtp):
    box, port = smtp
    p = pipeline_yaml(tmp_path, port, MANAGER)
    r = send(run_dir, "--config", p, "--json")
    assert r.exit_code == 0, r.output + r.stderr
    out = json.loads(r.stdout)
    assert (out["sent"], out["failed"], out["skipped"]) == (2, 0, 0)
    assert box.logins == [True]  # one session for both mails
    assert [m[1] for m in box.messages] == [["manager@example.cn"], ["boss@example.cn"]]
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    as_of = manifest["as_of"]
    for mail_from, _, msg in box.messages:
        assert mail_from == "report@example.cn"
        assert msg["Subject"] == f"月度客户分析：客户分析报告（{as_of}）— 经理月报"
        assert msg["From"].addresses[0].display_name == "客户分析"
        body = msg.get_body(("plain",)).get_content()
        assert f"截至 {as_of}" in body
        got = attachments(msg)
        assert set(got) == {f"客户分析报告_{as_of}.xlsx", f"客户名单_{as_of}.csv"}
        assert got[f"客户分析报告_{as_of}.xlsx"] == (run_dir / "report.xlsx").read_bytes()
        assert got[f"客户名单_{as_of}.csv"] == (run_dir / "customers.csv").read_bytes()
        types = {p.get_filename(): p.get_content_type() for p in msg.iter_attachments()}
        assert types[f"客户名单_{as_of}.csv"] == "text/csv"
        assert types[f"客户分析报告_{as_of}.xlsx"].endswith("spreadsheetml.sheet")
    # Chinese file names travel as RFC 2231 parameters
    raw = box.messages[0][2].as_string()
    assert "filename*" in raw and "utf-8''" in raw
    # the manifest records who got what, when, with the files' SHA-256
    recs = manifest["deliveries"]
    assert [(x["to"], x["status"]) for x in recs] == [
        ("manager@example.cn", "sent"),
        ("boss@example.cn", "sent"),
    ]
    sha = hashlib.sha256((run_dir / "report.xlsx").read_bytes()).hexdigest()
    assert {a["file"]: a["sha256"] for a in recs[0]["attachments"]}["report.xlsx"] == sha
    assert recs[0]["at"].startswith(time.strftime("%Y-"))
    # the password (set in the environment) is nowhere in the output or the manifest
    assert PASSWORD not in r.stdout + r.stderr
    assert PASSWORD not in (run_dir / "manifest.json").read_text(encoding="utf-8")


def test_the_body_shows_the_manifest_kpis_which_are_the_report_figures(run_dir, tmp_path, smtp):
    """One source: the mail's figures are manifest.json's kpis, and those are the numbers on
    the report's 概览 sheet."""
    from openpyxl import load_workbook

    box, port = smtp
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    k = manifest["kpis"]
    assert send(run_dir, "--config", pipeline_yaml(tmp_path, port, MANAGER)).exit_code == 0
    body = box.messages[0][2].get_body(("plain",)).get_content()
    assert f"客户数：{int(k['customers']):,}" in body
    assert f"活跃客户：{int(k['active']):,}" in body
    assert f"消费总额：¥{k['revenue']:,.2f}" in body
    assert f"复购率：{k['repurchase'] * 100:.1f}%" in body
    assert f"NPS：{k['nps']:.1f}" in body
    assert f"- 客户分析报告_{manifest['as_of']}.xlsx（" in body
    ws = load_workbook(run_dir / "report.xlsx", read_only=True).worksheets[0]
    shown = {r[0]: r[1] for r in ws.iter_rows(values_only=True) if r and r[0]}
    assert shown["客户数"] == k["customers"] and shown["消费总额"] == pytest.approx(k["revenue"])
    assert shown["复购率"] == pytest.approx(k["repurchase"]) and shown["NPS"] == k["nps"]


def test_owner_subscription_sends_each_owner_only_their_workbook(run_dir, tmp_path, smtp):
    box, port = smtp
    files = write_owner_workbooks(run_dir)
    r = send(run_dir, "--config", pipeline_yaml(tmp_path, port, OWNERS), "--json")
    assert r.exit_code == 0, r.output
    as_of = json.loads(r.stdout)["as_of"]
    by_rcpt = {m[1][0]: m[2] for m in box.messages}
    assert set(by_rcpt) == {"wangwu@example.cn", "zhaoliu@example.cn", "pool@example.cn"}
    for rcpt, owner in [
        ("wangwu@example.cn", "王五"),
        ("zhaoliu@example.cn", "赵六"),
        ("pool@example.cn", "未分配"),
    ]:
        got = attachments(by_rcpt[rcpt])
        assert list(got) == [f"{owner}_客户_{as_of}.xlsx"]
        assert got[f"{owner}_客户_{as_of}.xlsx"] == files[owner].read_bytes()
    # an owner's mail shows no firm-wide figures (only their customers, in the workbook)
    body = by_rcpt["wangwu@example.cn"].get_body(("plain",)).get_content()
    assert (
        "见附件（只含您负责的客户）" in body and "客户数：" not in body and "消费总额" not in body
    )
    # 王五's workbook holds 王五's customers and no one else's
    text = text_of("x.xlsx", attachments(by_rcpt["wangwu@example.cn"])[f"王五_客户_{as_of}.xlsx"])
    assert "王五" in text and "赵六" not in text


def test_no_full_phone_number_is_mailed(run_dir, tmp_path, smtp):
    box, port = smtp
    write_owner_workbooks(run_dir)
    subs = MANAGER + OWNERS
    assert send(run_dir, "--config", pipeline_yaml(tmp_path, port, subs)).exit_code == 0
    assert len(box.messages) == 5
    # the check can fail: the run's unmasked import holds full numbers
    import pandas as pd

    raw = pd.read_parquet(run_dir / "imported_customers.parquet")["phone"].astype(str)
    assert raw.str.contains(PHONE).any()
    for _, _, msg in box.messages:
        assert not PHONE.search(msg.get_body(("plain",)).get_content())
        for name, data in attachments(msg).items():
            text = text_of(name, data)
            assert "****" in text or name.endswith(".xlsx")
            assert not PHONE.search(text), (name, PHONE.search(text))


def test_dry_run_sends_nothing_and_lists_the_mails(run_dir, tmp_path, smtp):
    box, port = smtp
    before = (run_dir / "manifest.json").read_bytes()
    r = send(run_dir, "--config", pipeline_yaml(tmp_path, port, MANAGER), "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["dry_run"] and out["planned"] == 2 and out["sent"] == 0
    assert [m["to"] for m in out["mails"]] == ["manager@example.cn", "boss@example.cn"]
    sizes = {a["file"]: a["bytes"] for a in out["mails"][0]["attachments"]}
    assert sizes == {
        "report.xlsx": (run_dir / "report.xlsx").stat().st_size,
        "customers.csv": (run_dir / "customers.csv").stat().st_size,
    }
    assert box.messages == [] and box.logins == []
    assert (run_dir / "manifest.json").read_bytes() == before
    # the table for people, without a password in the environment
    r = runner.invoke(
        app,
        ["send", str(run_dir), "--config", str(tmp_path / "pipeline.yaml"), "--dry-run"],
        env={"CUSTTOOL_T_SMTP": ""},
    )
    assert r.exit_code == 0, r.output
    assert "DRY RUN" in r.stdout and "planned=2" in r.stdout and "经理月报" in r.stderr


def test_resend_is_skipped_unless_forced(run_dir, tmp_path, smtp):
    box, port = smtp
    p = pipeline_yaml(tmp_path, port, MANAGER)
    assert send(run_dir, "--config", p).exit_code == 0
    assert len(box.messages) == 2
    r = send(run_dir, "--config", p, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == 2
    assert len(box.messages) == 2  # nothing new
    r = send(run_dir, "--config", p, "--force", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["sent"] == 2
    assert len(box.messages) == 4
    recs = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["deliveries"]
    assert [x.get("forced", False) for x in recs] == [False, False, True, True]
    # a changed file is a new mail: not skipped
    (run_dir / "customers.csv").write_bytes((run_dir / "customers.csv").read_bytes() + b"\n")
    r = send(run_dir, "--config", p, "--json")
    assert json.loads(r.stdout)["sent"] == 2 and len(box.messages) == 6


def test_cycle_skips_a_subscription_that_is_not_due(run_dir, tmp_path, smtp):
    box, port = smtp
    as_of = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["as_of"]
    assert as_of == "2026-10-30"  # a Friday, not the 1st
    subs = (
        MANAGER
        + "      cycle: monthly\n"
        + OWNERS.replace("销售名单", "周报")
        + ("      cycle: weekly\n")
    )
    write_owner_workbooks(run_dir)
    r = send(run_dir, "--config", pipeline_yaml(tmp_path, port, subs), "--json")
    out = json.loads(r.stdout)
    assert out["mails"] == [] and box.messages == []
    assert out["not_due"] == [
        {"subscription": "经理月报", "cycle": "monthly"},
        {"subscription": "周报", "cycle": "weekly"},
    ]


# --------------------------------------------------------------------------- failures
def test_a_dead_server_is_exit_1_in_bounded_time_with_outputs_intact(run_dir, tmp_path):
    port = free_port()  # nothing listens here
    p = pipeline_yaml(tmp_path, port, MANAGER)
    before = {f.name: f.read_bytes() for f in run_dir.iterdir() if f.is_file()}
    t0 = time.monotonic()
    r = send(run_dir, "--config", p)
    assert time.monotonic() - t0 < 10
    assert r.exit_code == 1, r.output
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    problem = [x for x in lines if "not sent" in x]
    assert len(problem) == 1 and f"127.0.0.1:{port}: cannot connect" in problem[0]
    assert "after 2 attempt(s)" in problem[0]
    assert "Traceback" not in r.output + r.stderr
    after = {f.name: f.read_bytes() for f in run_dir.iterdir() if f.is_file()}
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }
    manifest = json.loads(after["manifest.json"])
    assert [(x["to"], x["status"]) for x in manifest["deliveries"]] == [
        ("manager@example.cn", "failed"),
        ("boss@example.cn", "failed"),
    ]
    assert "cannot connect" in manifest["deliveries"][0]["error"]
    # the next attempt tries again (a failure is not "already sent")
    r = send(run_dir, "--config", p, "--dry-run", "--json")
    assert json.loads(r.stdout)["planned"] == 2


def test_retries_back_off_and_are_bounded():
    """Three attempts with a doubling wait (the sleep is recorded, not slept)."""
    from custtool.config import SmtpConfig
    from custtool.deliver import Mail, _Failed, _Server

    waits: list[float] = []
    server = _Server(
        SmtpConfig.model_validate({"host": "127.0.0.1", "from": "a@b.cn"}),
        password=None,
        timeout=2,
        retries=3,
        backoff=0.5,
        port=free_port(),
        tls="none",
        ssl_context=None,
        sleep=waits.append,
    )
    with pytest.raises(_Failed) as exc:
        server.send(Mail("s", "x@y.cn", None, "主题", "正文", []), "a@b.cn")
    assert exc.value.attempts == 3 and exc.value.connection
    assert waits == [0.5, 1.0]


def test_wrong_password_is_exit_1_without_the_password(run_dir, tmp_path, smtp):
    box, port = smtp
    wrong = "wrong-Pa55"  # ASCII: smtplib's own login (the UTF-8 path is the right one)
    p = pipeline_yaml(tmp_path, port, MANAGER)
    r = send(run_dir, "--config", p, "--json", env={"CUSTTOOL_T_SMTP": wrong})
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["failed"] == 2 and box.messages == []
    # smtplib tries AUTH PLAIN, then LOGIN, in one session; 535 is permanent, so no retry
    # (retries: 2 would make it four): no account lock-out
    assert box.logins == [False, False]
    assert "login refused (535" in out["mails"][0]["error"] and USER in out["mails"][0]["error"]
    manifest = (run_dir / "manifest.json").read_text(encoding="utf-8")
    for text in (r.stdout, r.stderr, manifest):
        assert wrong not in text and PASSWORD not in text


def test_a_missing_password_variable_is_exit_2_before_sending(run_dir, tmp_path, smtp):
    box, port = smtp
    r = send(
        run_dir, "--config", pipeline_yaml(tmp_path, port, MANAGER), env={"CUSTTOOL_T_SMTP": ""}
    )
    assert r.exit_code == 2 and "CUSTTOOL_T_SMTP is not set" in r.stderr
    assert box.messages == [] and "deliveries" not in json.loads(
        (run_dir / "manifest.json").read_text(encoding="utf-8")
    )


def test_a_refused_recipient_fails_only_its_mail(run_dir, tmp_path, smtp):
    box, port = smtp
    box.refuse.add("manager@example.cn")  # the first of the two
    r = send(run_dir, "--config", pipeline_yaml(tmp_path, port, MANAGER), "--json")
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert [(m["to"], m["status"]) for m in out["mails"]] == [
        ("manager@example.cn", "failed"),
        ("boss@example.cn", "sent"),
    ]
    assert out["mails"][0]["error"].startswith("manager@example.cn: recipient refused (550")
    assert out["mails"][0]["attempts"] == 1  # 550 is permanent: not retried
    assert [m[1] for m in box.messages] == [["boss@example.cn"]]
    assert box.logins == [True]  # the session survives a refused address
    assert "1 of 2 mail(s) not sent" in r.stderr


def test_a_missing_file_is_exit_2_naming_subscription_and_file(run_dir, tmp_path, smtp):
    box, port = smtp
    subs = MANAGER + OWNERS + "    - name: 打印版\n      to: x@example.cn\n      send: [pdf]\n"
    r = send(run_dir, "--config", pipeline_yaml(tmp_path, port, subs), "--json")
    assert r.exit_code == 2
    err = json.loads(r.stdout)["error"]
    assert "'销售名单' needs owners/王五.xlsx" in err["message"]
    assert "'打印版' needs report.pdf" in err["message"]
    assert "formats: [xlsx, html, pdf]" in err["hint"] and "split_by: owner" in err["hint"]
    assert box.messages == [] and box.logins == []


# --------------------------------------------------------------------------- masking
def _unmasked_run(run_dir: Path) -> None:
    m = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    m["report"]["mask"] = False
    (run_dir / "manifest.json").write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")


def test_unmasked_outputs_are_not_mailed_by_a_masked_subscription(run_dir, tmp_path, smtp):
    box, port = smtp
    _unmasked_run(run_dir)
    r = send(run_dir, "--config", pipeline_yaml(tmp_path, port, MANAGER))
    assert r.exit_code == 2 and "the run's outputs are not masked" in r.stderr
    assert "经理月报" in r.stderr and box.messages == []
    # mask: false with a role that may not unmask: refused too
    sub = MANAGER + "      mask: false\n      role: analyst\n"
    r = send(run_dir, "--config", pipeline_yaml(tmp_path, port, sub))
    assert r.exit_code == 2 and "always sees masked personal data" in r.stderr
    assert box.messages == []
    # mask: false and role admin: the subscription may have them
    sub = MANAGER + "      mask: false\n      role: admin\n"
    r = send(run_dir, "--config", pipeline_yaml(tmp_path, port, sub))
    assert r.exit_code == 0, r.output
    assert len(box.messages) == 2


def test_mask_false_with_the_runs_analyst_role_is_refused_even_for_a_masked_run(
    run_dir, tmp_path, smtp
):
    """A subscription's role defaults to the run's report role (analyst in examples/)."""
    box, port = smtp
    r = send(run_dir, "--config", pipeline_yaml(tmp_path, port, MANAGER + "      mask: false\n"))
    assert r.exit_code == 2 and "role 'analyst'" in r.stderr and box.messages == []


# --------------------------------------------------------------------------- TLS
def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_tls_server_with_login(run_dir, tmp_path, monkeypatch, tls):
    import ssl

    from custtool.steps import run_send

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    box = Mailbox()
    if tls == "ssl":
        ctl = start_server(box, ssl_context=server_ctx)
    else:  # plain connection, STARTTLS required before anything else
        ctl = start_server(box, tls_context=server_ctx, require_starttls=True)
    try:
        p = pipeline_yaml(tmp_path, ctl.port, MANAGER.replace(", boss@example.cn", ""))
        p.write_text(p.read_text(encoding="utf-8").replace("tls: none", f"tls: {tls}"), "utf-8")
        monkeypatch.setenv("CUSTTOOL_T_SMTP", PASSWORD)
        # the default context checks the certificate: a self-signed one is refused …
        refused = run_send(run_dir, config=p, retries=1)
        assert refused.exit_code == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.problem
        # … and accepted by a context that trusts it
        client_ctx = ssl.create_default_context(cafile=str(cert))
        ok = run_send(run_dir, config=p, ssl_context=client_ctx)
        assert ok.exit_code == 0 and ok.data["sent"] == 1
        assert box.logins == [True] and len(box.messages) == 1
    finally:
        ctl.stop()


# --------------------------------------------------------------------------- custtool run
# two customers and one row rejected (a masked phone and nothing else to know him by), three
# orders (the latest on 2026-09-10: the as-of date); the subscription mails report.xlsx and
# customers.csv: the outputs nobody mails here (report.html, cards, the book) are left out
RUN_CUSTOMERS = (
    "客户编号,姓名,手机号\nV001,张三,13812345678\nV002,李四,13987654321\nV003,王五,138****0000\n"
)
RUN_ORDERS = (
    "订单号,客户ID,手机号,下单时间,实付金额\n"
    "O1,V001,13812345678,2026-09-01,100\n"
    "O2,V002,13987654321,2026-09-10,250.5\n"
    "O3,V001,13812345678,2026-08-02,80\n"
)


def _pipeline_with_deliver(tmp_path: Path, port: int, fail_on_rejects: int = 50) -> Path:
    ex = tmp_path / "inputs"
    ex.mkdir()
    (ex / "customers.csv").write_text(RUN_CUSTOMERS, encoding="utf-8")
    (ex / "orders.csv").write_text(RUN_ORDERS, encoding="utf-8")
    text = (
        f"name: t\nfail_on_rejects: {fail_on_rejects}\n"
        "inputs:\n  customers: [customers.csv]\n  orders: [orders.csv]\n"
        "report:\n  formats: [xlsx]\ncards:\n  enabled: false\nbook: false\n"
    )
    deliver = pipeline_yaml(tmp_path, port, MANAGER).read_text(encoding="utf-8")
    deliver = deliver[deliver.index("deliver:") :]
    (ex / "pipeline.yaml").write_text(text + deliver, encoding="utf-8")
    return ex / "pipeline.yaml"


def test_run_sends_after_a_successful_run_not_after_one_over_the_reject_limit(tmp_path, smtp):
    box, port = smtp
    p = _pipeline_with_deliver(tmp_path, port, fail_on_rejects=0)
    env = {"CUSTTOOL_T_SMTP": PASSWORD}
    r = runner.invoke(app, ["run", str(p), "--out", str(tmp_path / "o1")], env=env)
    assert r.exit_code == 1, r.output  # 1 row rejected > 0
    assert box.messages == [] and "Not mailed: rejects over the limit" in r.stderr
    assert (tmp_path / "o1" / "2026-09-10" / "report.xlsx").exists()  # the run itself done
    p.write_text(p.read_text(encoding="utf-8").replace("fail_on_rejects: 0", ""), "utf-8")
    r = runner.invoke(app, ["run", str(p), "--out", str(tmp_path / "o2"), "--quiet"], env=env)
    assert r.exit_code == 0, r.output + r.stderr
    assert " mailed=2 mail_failed=0" in r.stdout and len(box.messages) == 2
    folder = tmp_path / "o2" / "2026-09-10"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert [x["status"] for x in manifest["deliveries"]] == ["sent", "sent"]
    got = attachments(box.messages[0][2])
    assert got[f"客户分析报告_{manifest['as_of']}.xlsx"] == (folder / "report.xlsx").read_bytes()
    # `custtool send` on the folder afterwards finds the pipeline in the manifest and skips
    r = runner.invoke(app, ["send", str(folder), "--json"], env=env)
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == 2


def test_run_without_the_password_stops_before_writing(tmp_path, smtp):
    _, port = smtp
    p = _pipeline_with_deliver(tmp_path, port)
    r = runner.invoke(
        app, ["run", str(p), "--out", str(tmp_path / "o")], env={"CUSTTOOL_T_SMTP": ""}
    )
    assert r.exit_code == 2 and "CUSTTOOL_T_SMTP is not set" in r.stderr
    assert not (tmp_path / "o").exists()


def test_no_send_reaches_the_library(monkeypatch, tmp_path):
    import custtool.pipeline as pipeline

    seen = {}

    class Stop(Exception):
        pass

    def fake(pl, **kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(pipeline, "run_pipeline", fake)
    monkeypatch.setattr(pipeline, "load_pipeline", lambda p: type("P", (), {"name": "x"})())
    runner.invoke(app, ["run", str(tmp_path / "p.yaml"), "--no-send"])
    assert seen["send"] is False
    runner.invoke(app, ["run", str(tmp_path / "p.yaml")])
    assert seen["send"] is True


def test_send_json_equals_the_library_result(run_dir, tmp_path, smtp):
    from custtool.steps import run_send

    _, port = smtp
    p = pipeline_yaml(tmp_path, port, MANAGER)
    r = send(run_dir, "--config", p, "--dry-run", "--json")
    lib = run_send(run_dir, config=p, dry_run=True)
    assert json.loads(r.stdout) == json.loads(json.dumps(lib.to_dict(), ensure_ascii=False))
    assert r.exit_code == lib.exit_code == 0


def test_body_respects_the_roles_amounts_and_a_custom_subject(run_dir, tmp_path):
    from custtool.deliver import load_deliver, plan_delivery

    sub = MANAGER + "      role: service\n      subject: 客户月报 {as_of}\n"
    deliver, _ = load_deliver(pipeline_yaml(tmp_path, 25, sub))
    plan = plan_delivery(run_dir, deliver)
    mail = plan.mails[0]
    assert mail.subject == "客户月报 2026-10-30"
    assert "客户数：343" in mail.body and "复购率：" in mail.body
    assert "消费总额" not in mail.body and "客单价" not in mail.body  # service: no amounts
