"""E-mail delivery of a finished run folder: subscriptions → a plan → SMTP (issue 17).

A pipeline file's ``deliver:`` section (:class:`custtool.config.DeliverConfig`) names the mail
server and the subscriptions; the defaults and the Chinese subject and body are in
``rules/deliver.yaml``. :func:`plan_delivery` decides who gets what from a run folder
(``out/<as-of>/``) — recipients, subject, body, attachments with their size and SHA-256 —
and checks everything before anything is sent: every asked-for file exists, masking and roles
allow the mail. :func:`send_run` sends the plan with :mod:`smtplib` and records each mail in
the run's ``manifest.json`` (``deliveries``), written atomically.

Decisions (documented in the README, "Monthly e-mail with cron"):

- **One mail per recipient address**: recipients do not see each other, and a refused
  address fails only its own mail.
- **cycle** is decided on the run's as-of date (the date in the firm's time zone that the run
  resolved, ``manifest.json: as_of``), never on the clock: ``weekly`` = the as-of date is a
  Monday, ``monthly`` = it is the 1st, absent = every run. Sending an old run folder again
  therefore decides the same way as the run did. Cron passes ``--as-of`` with today's date.
- **Re-sending**: a mail whose subscription, address and attachments (by SHA-256) were already
  sent from this run folder is skipped unless ``force``; a new run of the same as-of date
  writes a new folder and a new manifest, so it is mailed again.
- **Failures**: an unreachable server, a dropped connection or a temporary refusal (SMTP 4xx)
  is retried ``retries`` times with a doubling ``backoff``; a permanent refusal (5xx: wrong
  password, unknown recipient) is not retried — trying a wrong password again only risks
  locking the account. A failed mail is recorded in the manifest and makes the exit code 1
  (the run itself is fine; 2 stays "could not run"). The run's outputs are never touched.
- **Masking**: a subscription mails the run's files as they are. If the run wrote unmasked
  exports (``manifest.json: report.mask`` false), only a subscription with ``mask: false``
  whose role allows unmasking (rules/roles.yaml, :func:`custtool.report.masking.check_unmask`)
  may mail them; any other subscription stops the delivery before anything is sent (exit 2).
- The password comes only from the environment variable ``password_env``; it is never
  written to the manifest, the result, a log or an error message.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from custtool.atomic import file_sha256
from custtool.errors import ConfigError, InputError

#: the run folder's file for each kind a subscription may ``send`` (owner_report: per owner)
ATTACHMENTS = {
    "report": "report.xlsx",
    "csv": "customers.csv",
    "pdf": "report.pdf",
    "html": "report.html",
}
OWNERS_DIR = "owners"
UNASSIGNED = "未分配"  # the workbook of customers without an owner

#: the file name a recipient sees (placeholders: as_of, owner)
MAIL_NAMES = {
    "report": "客户分析报告_{as_of}.xlsx",
    "csv": "客户名单_{as_of}.csv",
    "pdf": "客户分析报告_{as_of}.pdf",
    "html": "客户分析报告_{as_of}.html",
    "owner_report": "{owner}_客户_{as_of}.xlsx",
}
MIME_TYPES = {
    ".xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ".csv": ("text", "csv"),
    ".pdf": ("application", "pdf"),
    ".html": ("text", "html"),
}
#: the headline figures in the body, in this order (manifest.json: kpis)
KPI_ORDER = ("customers", "active", "revenue", "aov", "repurchase", "nps")
_AMOUNTS = {"revenue", "aov"}
OWNER_KPIS = "见附件（只含您负责的客户）"
_UNSAFE = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')


def owner_file(owner: str | None, manifest: dict[str, Any] | None = None) -> str:
    """``owners/<owner>.xlsx`` of a run folder: the file the run wrote for ``owner`` (the
    manifest's ``owner_report`` outputs; ``owners/未分配.xlsx`` for customers without an
    owner), else the name :func:`custtool.report.owners.safe_file_name` gives it (``/\\:*?"<>|``
    and control characters stripped) — one naming rule for the writer and the mailer."""
    from custtool.report.owners import safe_file_name

    name = str(owner or "").strip()
    for o in (manifest or {}).get("outputs") or []:
        if o.get("kind") != "owner_report":
            continue
        if (not name and o.get("unassigned")) or (
            name and o.get("owner") == name and not o.get("unassigned")
        ):
            return str(o["file"])
    return f"{OWNERS_DIR}/{safe_file_name(name) if name else UNASSIGNED}.xlsx"


def is_due(cycle: str | None, as_of: str | date) -> bool:
    """Whether a subscription with ``cycle`` is sent for a run as of ``as_of``: weekly on a
    Monday, monthly on the 1st, every run when there is no cycle."""
    day = as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of)[:10])
    if cycle == "weekly":
        return day.weekday() == 0
    if cycle == "monthly":
        return day.day == 1
    return True


# --------------------------------------------------------------------------- the plan
@dataclass
class Attachment:
    """One file of the run folder attached to a mail."""

    kind: str
    file: str  # relative to the run folder, e.g. owners/刘洋.xlsx
    name: str  # the file name the recipient sees
    bytes: int
    sha256: str
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file": self.file,
            "name": self.name,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


@dataclass
class Mail:
    """One mail to one address: planned, then sent, failed or skipped (already sent)."""

    subscription: str
    to: str
    owner: str | None
    subject: str
    body: str
    attachments: list[Attachment]
    status: str = "planned"  # planned | sent | failed | skipped
    attempts: int = 0
    error: str | None = None
    at: str | None = None
    forced: bool = False

    @property
    def key(self) -> tuple[Any, ...]:
        """What makes two mails the same mail: subscription, address and attachments."""
        return (self.subscription, self.to, tuple(sorted(a.sha256 for a in self.attachments)))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "subscription": self.subscription,
            "to": self.to,
            "owner": self.owner,
            "subject": self.subject,
            "attachments": [a.to_dict() for a in self.attachments],
            "status": self.status,
        }
        if self.status in ("sent", "failed"):
            out.update(at=self.at, attempts=self.attempts)
        if self.error:
            out["error"] = self.error
        if self.forced:
            out["forced"] = True
        return out


def _record_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    return (
        rec.get("subscription"),
        rec.get("to"),
        tuple(sorted(a.get("sha256", "") for a in rec.get("attachments") or [])),
    )


@dataclass
class DeliveryPlan:
    """Who gets what from a run folder."""

    run_dir: Path
    as_of: str
    mails: list[Mail]
    not_due: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeliveryResult:
    """What :func:`send_run` did (or, with ``dry_run``, would do)."""

    run_dir: Path
    as_of: str
    dry_run: bool
    mails: list[Mail]
    not_due: list[dict[str, Any]]
    manifest: dict[str, Any]

    def count(self, status: str) -> int:
        return sum(m.status == status for m in self.mails)

    @property
    def exit_code(self) -> int:
        """0 sent (or nothing to send); 1 a mail could not be sent (the run folder is fine)."""
        return int(self.count("failed") > 0)

    @property
    def problem(self) -> str | None:
        """One line for a failed delivery."""
        failed = [m for m in self.mails if m.status == "failed"]
        if not failed:
            return None
        return (
            f"e-mail: {len(failed)} of {len(self.mails)} mail(s) not sent ({failed[0].error}); "
            f"recorded in {self.run_dir / 'manifest.json'}; the run's outputs are in place"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": str(self.run_dir),
            "as_of": self.as_of,
            "dry_run": self.dry_run,
            "sent": self.count("sent"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "planned": self.count("planned"),
            "mails": [m.to_dict() for m in self.mails],
            "not_due": self.not_due,
        }


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``manifest.json`` of a finished run folder; InputError when it is not one."""
    path = Path(run_dir) / "manifest.json"
    if not Path(run_dir).is_dir():
        raise InputError(
            f"{run_dir}: run folder not found",
            "name a folder made by `custtool run`, e.g. out/2026-10-31",
            file=str(run_dir),
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{run_dir}: not a finished run folder (no manifest.json)",
            "name a folder made by `custtool run`, e.g. out/2026-10-31",
            file=str(run_dir),
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise InputError(
            f"{path}: manifest.json is not valid JSON",
            "run the pipeline again to rebuild the run folder",
            file=str(path),
        ) from None
    if not isinstance(data, dict) or "as_of" not in data:
        raise InputError(f"{path}: not a custtool run manifest", "run the pipeline again")
    return data


def check_subscriptions(
    deliver: Any,
    *,
    run_mask: bool = True,
    run_role: str | None = None,
    password: bool = False,
    where: Any = None,
) -> None:
    """ConfigError (exit 2) before anything is written or sent when a subscription may not
    have the run's files: ``mask: false`` with a role that may not unmask, masked mail asked
    of a run that wrote unmasked files, an unknown role; with ``password``, also when the
    server needs a login and the password variable is not set."""
    from custtool.config import deliver_settings
    from custtool.report.masking import check_unmask, get_role

    settings = deliver_settings()
    origin = f"{where}: " if where else ""
    for sub in deliver.subscriptions:
        mask = settings.subscription.mask if sub.mask is None else sub.mask
        try:
            role = get_role(sub.role or run_role)
            check_unmask(role, mask)
        except ConfigError as exc:
            raise ConfigError(
                f"{origin}subscription {sub.name!r}: {exc.message}",
                "mask: false needs a role that may unmask (role: admin, rules/roles.yaml)",
            ) from None
        if mask and not run_mask:
            raise ConfigError(
                f"{origin}subscription {sub.name!r}: the run's outputs are not masked "
                "(report: mask: false) and this subscription mails masked files only",
                "run with report: mask: true, or give the subscription mask: false and a role "
                "that may unmask (role: admin) if its recipients may see personal data",
            )
    if password:
        check_password(deliver, where=where)


def check_password(deliver: Any, *, where: Any = None) -> None:
    """ConfigError when the server needs a login and the password variable is not set."""
    env = password_variable(deliver)
    if deliver.smtp.user and not os.environ.get(env):
        origin = f"{where}: " if where else ""
        raise ConfigError(
            f"{origin}deliver.smtp: the password variable {env} is not set",
            f"export {env}=… before sending (the password is read from the environment "
            "only), or pass --no-send / --dry-run",
        )


def _fill(template: str, values: dict[str, str]) -> str:
    """``{key}`` placeholders replaced by plain text (no format-string evaluation)."""
    out = template
    for k, v in values.items():
        out = out.replace("{" + k + "}", v)
    return out


def _figure(key: str, value: Any) -> str:
    if value is None:
        return "-"
    v = float(value)
    if key in ("customers", "active"):
        return f"{int(v):,}"
    if key in _AMOUNTS:
        return f"¥{v:,.2f}"
    if key == "repurchase":
        return f"{v * 100:.1f}%"
    return f"{v:.1f}"


def kpi_lines(kpis: dict[str, Any], *, amounts: bool = True) -> list[str]:
    """The headline figures of ``manifest.json: kpis`` as ``客户数：1,234`` lines (the labels
    of the report's 概览 sheet); amounts left out for a role without them."""
    from custtool import labels as L

    return [
        f"{L.text(f'kpi_{k}', 'zh')}：{_figure(k, kpis[k])}"
        for k in KPI_ORDER
        if k in kpis and (amounts or k not in _AMOUNTS)
    ]


def plan_delivery(
    run_dir: str | os.PathLike[str],
    deliver: Any,
    *,
    name: str | None = None,
    force: bool = False,
    config_file: Any = None,
) -> DeliveryPlan:
    """Who gets what from ``run_dir``: one :class:`Mail` per address of every subscription due
    for the run's as-of date. Raises ConfigError (nothing sent) when a subscription asks for a
    file the folder does not have, or masking forbids the mail."""
    from custtool.config import deliver_settings
    from custtool.report.masking import get_role

    folder = Path(run_dir)
    manifest = read_manifest(folder)
    as_of = str(manifest["as_of"])
    report = manifest.get("report") or {}
    check_subscriptions(
        deliver,
        run_mask=bool(report.get("mask", True)),
        run_role=report.get("role"),
        where=config_file,
    )
    settings = deliver_settings()
    run_name = name or str(manifest.get("name") or "custtool")
    kpis = manifest.get("kpis") or {}
    sent_before = {
        _record_key(r) for r in manifest.get("deliveries") or [] if r.get("status") == "sent"
    }
    mails: list[Mail] = []
    not_due: list[dict[str, Any]] = []
    missing: list[str] = []
    for sub in deliver.subscriptions:
        if not is_due(sub.cycle, as_of):
            not_due.append({"subscription": sub.name, "cycle": sub.cycle})
            continue
        role = get_role(sub.role or report.get("role"))
        recipients: list[tuple[str, str | None, list[tuple[str, str]]]] = []
        if sub.owners is not None:
            for owner, address in sub.owners.items():
                recipients.append((address, owner, [("owner_report", owner_file(owner, manifest))]))
        else:
            files = [(kind, ATTACHMENTS[kind]) for kind in dict.fromkeys(sub.send)]
            recipients.extend((address, None, files) for address in dict.fromkeys(sub.to or []))
        for address, owner, files in recipients:
            attachments: list[Attachment] = []
            for kind, rel in files:
                path = folder / rel
                if not path.is_file():
                    missing.append(f"{sub.name!r} needs {rel}")
                    continue
                safe_owner = Path(owner_file(owner, manifest)).stem  # file-safe, 未分配 for none
                shown = _fill(MAIL_NAMES[kind], {"as_of": as_of, "owner": safe_owner})
                attachments.append(
                    Attachment(kind, rel, shown, path.stat().st_size, file_sha256(path), path)
                )
            values = {
                "name": run_name,
                "subscription": sub.name,
                "as_of": as_of,
                "owner": owner or "",
                # an owner sees only their customers: no firm-wide figures in their mail
                "kpis": OWNER_KPIS
                if owner is not None
                else "\n".join(kpi_lines(kpis, amounts=role.amounts is not False)) or "（无）",
                "attachments": "\n".join(f"- {a.name}（{_size(a.bytes)}）" for a in attachments),
            }
            subject = _fill(sub.subject or settings.subject, values)
            subject = " ".join(subject.split())  # one line: no header injection
            mail = Mail(
                sub.name, address, owner, subject, _fill(settings.body, values), attachments
            )
            if mail.key in sent_before:
                if force:
                    mail.forced = True
                else:
                    mail.status = "skipped"
            mails.append(mail)
    if missing:
        raise ConfigError(
            f"{config_file + ': ' if isinstance(config_file, str) else ''}run folder {folder} "
            f"lacks files the subscriptions ask for: {'; '.join(dict.fromkeys(missing))}",
            "add the format to the pipeline's report: section (formats: [xlsx, html, pdf]; "
            "split_by: owner for owner_report) and run again — nothing was sent",
            file=str(folder),
        )
    return DeliveryPlan(folder, as_of, mails, not_due, manifest)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


# --------------------------------------------------------------------------- messages
def build_message(mail: Mail, sender: str) -> Any:
    """The :class:`email.message.EmailMessage` of ``mail``: Chinese subject and sender name
    (RFC 2047), UTF-8 body, attachments with their MIME type and RFC 2231 file names."""
    from email.headerregistry import Address
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid, parseaddr

    display, addr = parseaddr(sender)
    user, _, domain = addr.partition("@")
    msg = EmailMessage()
    msg["Subject"] = mail.subject
    msg["From"] = Address(display or "", user, domain)
    msg["To"] = mail.to
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=domain or None)
    msg.set_content(mail.body)
    for a in mail.attachments:
        maintype, subtype = MIME_TYPES.get(
            Path(a.file).suffix.lower(), ("application", "octet-stream")
        )
        msg.add_attachment(
            a.path.read_bytes(),
            maintype=maintype,
            subtype=subtype,
            filename=a.name,  # RFC 2231 (filename*=utf-8''…); no name= on Content-Type:
        )  # Python's email folds a long type with a non-ASCII name= into a broken header
    return msg


# --------------------------------------------------------------------------- sending
class _Failed(Exception):
    """A mail failed for good: ``message`` is the one line recorded; ``connection`` when the
    server could not be reached or refused the login (the next mail would fail the same)."""

    def __init__(self, message: str, attempts: int, connection: bool) -> None:
        super().__init__(message)
        self.message, self.attempts, self.connection = message, attempts, connection


def _permanent(exc: BaseException) -> bool:
    """A refusal retrying cannot fix: SMTP 5xx (wrong password, unknown recipient)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [c for c, _ in exc.recipients.values()]
        return bool(codes) and all(500 <= c < 600 for c in codes)
    code = getattr(exc, "smtp_code", None)
    return isinstance(code, int) and 500 <= code < 600


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"recipient refused ({code} {_text(resp)})" for code, resp in exc.recipients.values()
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"login refused ({exc.smtp_code} {_text(exc.smtp_error)})"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text(resp: Any) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return " ".join(text.split())[:200]


class _Server:
    """One SMTP session with bounded retries; the password never leaves this object."""

    def __init__(
        self,
        smtp: Any,
        *,
        password: str | None,
        timeout: float,
        retries: int,
        backoff: float,
        port: int,
        tls: str,
        ssl_context: ssl.SSLContext | None,
        sleep: Callable[[float], None],
    ) -> None:
        self.smtp, self.timeout, self.retries, self.backoff = smtp, timeout, retries, backoff
        self.port, self.tls, self.sleep = port, tls, sleep
        self.__password = password
        self.context = ssl_context
        self.client: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.smtp.host}:{self.port}"

    def _clean(self, text: str) -> str:
        return text.replace(self.__password, "***") if self.__password else text

    def _context(self) -> ssl.SSLContext:
        if self.context is None:
            self.context = ssl.create_default_context()
        return self.context

    def _open(self) -> smtplib.SMTP:
        host = self.smtp.host
        client: smtplib.SMTP
        if self.tls == "ssl":
            client = smtplib.SMTP_SSL(
                host, self.port, timeout=self.timeout, context=self._context()
            )
        else:
            client = smtplib.SMTP(host, self.port, timeout=self.timeout)
        try:
            if self.tls == "starttls":
                client.starttls(context=self._context())
            if self.smtp.user:
                _login(client, self.smtp.user, self.__password or "")
        except BaseException:
            _quietly(client.close)
            raise
        return client

    def close(self) -> None:
        if self.client is not None:
            _quietly(self.client.quit)
            _quietly(self.client.close)
        self.client = None

    def send(self, mail: Mail, sender: str) -> int:
        """Send one mail, connecting first when needed; the attempts it took. Temporary
        failures wait ``backoff`` (doubled each time) and reconnect, up to ``retries``
        attempts; permanent ones (SMTP 5xx) stop at once. Raises :class:`_Failed`."""
        from email.utils import parseaddr

        msg = build_message(mail, sender)
        from_addr = parseaddr(sender)[1]
        for attempt in range(1, self.retries + 1):
            connecting = self.client is None
            try:
                if self.client is None:
                    self.client = self._open()
                connecting = False
                self.client.send_message(msg, from_addr=from_addr, to_addrs=[mail.to])
                return attempt
            except (smtplib.SMTPException, OSError) as exc:
                if connecting or not _permanent(exc):
                    self.close()  # a refused address leaves the session usable (smtplib RSETs)
                text = self._clean(_describe(exc))
                if connecting:
                    login = isinstance(exc, smtplib.SMTPAuthenticationError)
                    line = f"{self.where}: " + (
                        f"{text} for user {self.smtp.user}" if login else f"cannot connect ({text})"
                    )
                else:
                    line = f"{mail.to}: {text}"
                if _permanent(exc) or attempt == self.retries:
                    if not _permanent(exc):
                        line += f" after {attempt} attempt(s)"
                    raise _Failed(line, attempt, connecting) from None
                self.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover


def _login(client: smtplib.SMTP, user: str, password: str) -> None:
    """``client.login``; a user name or password that is not ASCII (smtplib cannot send one)
    goes as AUTH PLAIN in UTF-8 (RFC 4616)."""
    if (user + password).isascii():
        client.login(user, password)
        return
    import base64

    client.ehlo_or_helo_if_needed()
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
    code, resp = client.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, resp)


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - closing a broken connection: nothing to do
        pass


def password_variable(deliver: Any) -> str:
    """The environment variable holding the SMTP password (``password_env``, else
    rules/deliver.yaml's)."""
    from custtool.config import deliver_settings

    return deliver.smtp.password_env or deliver_settings().smtp.password_env


def load_deliver(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """The ``deliver:`` section of a pipeline file and the pipeline's name; ConfigError
    (``file:line: key``) when the file or the section is wrong or missing. The inputs are not
    looked for: sending needs only the finished run folder."""
    from custtool.config import PipelineFile, load_model

    model = load_model(PipelineFile, path, what="pipeline file", hint="see the README: e-mail")
    if model.deliver is None:
        raise ConfigError(
            f"{path}: no deliver: section",
            "add deliver: with smtp: and subscriptions: (README: Monthly e-mail with cron)",
            file=str(path),
        )
    return model.deliver, model.name or Path(path).stem


def send_run(
    run_dir: str | os.PathLike[str],
    deliver: Any,
    *,
    name: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    config_file: Any = None,
    timeout: float | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """Mail the subscriptions due for the run in ``run_dir`` and record them in its manifest.

    ``dry_run`` plans only (no password needed, nothing sent or written). ``force`` sends
    again what was already sent. ``timeout``/``retries``/``backoff`` override the pipeline's
    ``deliver: smtp:`` and rules/deliver.yaml; ``ssl_context`` replaces the default
    certificate checks (tests with a self-signed server). Raises ConfigError before anything
    is sent when the plan cannot be made; a mail that fails is recorded, not raised
    (``exit_code`` 1).
    """
    from custtool.config import deliver_settings

    plan = plan_delivery(run_dir, deliver, name=name, force=force, config_file=config_file)
    result = DeliveryResult(
        plan.run_dir, plan.as_of, dry_run, plan.mails, plan.not_due, plan.manifest
    )
    todo = [m for m in plan.mails if m.status == "planned"]
    if dry_run or not todo:
        return result
    check_password(deliver, where=config_file)
    defaults = deliver_settings().smtp
    smtp = deliver.smtp
    tls = smtp.tls or defaults.tls
    if backoff is None:
        backoff = smtp.backoff if smtp.backoff is not None else defaults.backoff
    server = _Server(
        smtp,
        password=os.environ.get(password_variable(deliver)) if smtp.user else None,
        timeout=timeout or smtp.timeout or defaults.timeout,
        retries=retries or smtp.retries or defaults.retries,
        backoff=backoff,
        port=smtp.port or defaults.ports[tls],
        tls=tls,
        ssl_context=ssl_context,
        sleep=sleep,
    )
    tz = _zone(plan.manifest.get("timezone"))
    dead: str | None = None  # the server cannot be reached or refused the login: stop trying
    try:
        for mail in todo:
            mail.at = datetime.now(tz).isoformat(timespec="seconds")
            if dead is not None:
                mail.status, mail.error = "failed", dead
                continue
            try:
                mail.attempts = server.send(mail, smtp.from_)
                mail.status = "sent"
            except _Failed as exc:
                mail.status, mail.error, mail.attempts = "failed", exc.message, exc.attempts
                if exc.connection:
                    dead = exc.message
    finally:
        server.close()
    result.manifest = record_deliveries(plan.run_dir, todo)
    return result


def _zone(name: Any) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(str(name)) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def record_deliveries(run_dir: Path, mails: list[Mail]) -> dict[str, Any]:
    """Append ``mails`` to ``deliveries`` of the run's manifest.json (atomically); the new
    manifest. Records hold addresses, subjects, file names, sizes and SHA-256 — never the
    password or the body."""
    from custtool.atomic import atomic_path

    manifest = read_manifest(run_dir)
    manifest.setdefault("deliveries", []).extend(m.to_dict() for m in mails)
    path = Path(run_dir) / "manifest.json"
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
        )
    return manifest


__all__ = [
    "ATTACHMENTS",
    "Attachment",
    "DeliveryPlan",
    "DeliveryResult",
    "Mail",
    "build_message",
    "check_password",
    "check_subscriptions",
    "is_due",
    "kpi_lines",
    "load_deliver",
    "owner_file",
    "password_variable",
    "plan_delivery",
    "read_manifest",
    "record_deliveries",
    "send_run",
]
