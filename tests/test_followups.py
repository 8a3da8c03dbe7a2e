"""Follow-up reminders and status transitions on a hand-built log."""

from __future__ import annotations

import pandas as pd
import pytest

from custtool.attribution import attribute
from custtool.errors import ConfigError, InputError
from custtool.followups import apply_transitions, due_followups, load_followup_rules

AS_OF = "2026-10-31"


def customers():
    return pd.DataFrame(
        {
            "customer_id": ["C00000001", "C00000002", "C00000003", "C00000004", "C00000005"],
            "name": ["张伟", "李娜", "王芳", "赵强", "钱多"],
            "source_ids": ["电商:TB1", "门店:M1", "电商:TB3;门店:M3", "", ""],
            "phones": ["13800000001", "13800000002", "13800000003", "13800000004", "13800000005"],
            "emails": ["", "", "", "zhao@x.com", ""],
            "owner": ["王五", "赵六", "王五", "", "赵六"],
            "tier": ["高价值", "低价值", "中价值", "高价值", "低价值"],
            "rfm_class": [
                "重要价值客户",
                "一般挽留客户",
                "重要挽留客户",
                "重要保持客户",
                "一般发展客户",
            ],
            "tags": [["高价值"], ["流失风险"], ["投诉客户"], [], []],
            "status": ["成交", "意向", "成交", "潜在", "潜在"],
        }
    )


def log():
    return pd.DataFrame(
        {
            "customer_id": ["TB1", "M1", "", "", "M3", "C00000005"],
            "phone": ["", "", "13800000003", "", "", ""],
            "email": ["", "", "", "zhao@x.com", "", ""],
            "time": pd.to_datetime(
                [
                    "2026-06-01 10:00",
                    "2026-10-20 09:00",
                    "2026-10-25 15:00",
                    "2026-09-01 00:00",
                    "2026-10-28 00:00",
                    "2026-10-29 00:00",
                ]
            ),
            "method": ["拜访", "电话", "投诉", "电话", "电话", "电话"],
            "result": ["有意向", "需跟进", "需跟进", "合同签订", "报价单已发送", "暂无意向"],
            "next_follow_up": pd.to_datetime(
                [None, "2026-10-27", None, None, "2026-11-05", "2026-12-30"]
            ),
            "staff": ["王五", "赵六", "王五", "孙八", "王五", "赵六"],
        }
    )


def test_attribute_by_source_id_phone_and_email():
    linked = attribute(log(), customers(), kind="interactions").records
    assert linked["customer_id"].tolist() == [
        "C00000001",
        "C00000002",
        "C00000003",
        "C00000004",
        "C00000003",
        "C00000005",
    ]
    assert linked["match_key"].tolist() == ["id", "id", "phone", "email", "id", "id"]
    assert linked["source_customer_id"].tolist() == ["TB1", "M1", "", "", "M3", "C00000005"]


def test_followups_attribute_a_channel_id_through_the_import_channel():
    """The reported bug: the old linker qualified ids by a ``channel`` column while imports
    write ``_channel``, so an id two channels use (X1 is 电商's for 张伟 and 门店's for 李娜)
    matched nobody and 李娜's scheduled call was lost."""
    cust = customers().assign(source_ids=["电商:X1", "门店:X1", "", "", ""], phones="", emails="")
    entry = pd.DataFrame(
        {
            "_channel": ["门店"],
            "customer_id": ["X1"],
            "time": pd.to_datetime(["2026-10-20 09:00"]),
            "method": ["电话"],
            "result": ["合同签订"],
            "next_follow_up": pd.to_datetime(["2026-10-27"]),
            "staff": ["赵六"],
        }
    )
    att = attribute(entry, cust, kind="interactions")
    assert att.records["customer_id"].tolist() == ["C00000002"] and att.records[
        "match_key"
    ].tolist() == ["id"]
    tasks = due_followups(cust, entry, as_of=AS_OF)
    sched = tasks[tasks["rule"] == "下次跟进时间"]
    assert sched[["customer_id", "state", "days_overdue"]].values.tolist() == [
        ["C00000002", "逾期", 4]
    ]
    status = apply_transitions(cust, entry).set_index("customer_id")["status"]
    assert status["C00000002"] == "成交客户" and status["C00000001"] == "成交"


def test_attribution_is_the_only_matcher():
    import importlib.util
    import re
    from pathlib import Path

    assert importlib.util.find_spec("custtool.linking") is None
    root = Path(__file__).resolve().parent.parent / "custtool"
    # matching records: the index's match(), the old linker, or a join of raw rows on the
    # source ids (the report's and the cards' old copies)
    pattern = re.compile(
        r"\.match\((?:records|orders|interactions|surveys|log)|attach_customer_ids|customer_keys\(|source_ids\"\]\)\.str\.split"
    )
    users = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    )
    assert users == ["attribution.py"]


def test_due_followups_from_log_and_rules():
    tasks = due_followups(customers(), log(), as_of=AS_OF)
    got = {
        (r.customer_id, r.rule): (r.due_date.date().isoformat(), r.state, r.days_overdue, r.owner)
        for r in tasks.itertuples()
    }
    assert got == {
        # log: 李娜 was to be called on 10-27 → 4 days overdue
        ("C00000002", "下次跟进时间"): ("2026-10-27", "逾期", 4, "赵六"),
        # log: 王芳's next follow-up 11-05 falls within the 7-day window
        ("C00000003", "下次跟进时间"): ("2026-11-05", "即将到期", 0, "王五"),
        # 流失风险 (李娜): last contact 10-20 + 30 days = 11-19, outside the window → not listed
        # 高价值 张伟: last visit 06-01 + 90 = 08-30 → overdue 62 days
        ("C00000001", "高价值客户每季度拜访"): ("2026-08-30", "逾期", 62, "王五"),
        # 高价值 赵强: only a phone call, never a visit → due at the as-of date; owner from the log staff
        ("C00000004", "高价值客户每季度拜访"): ("2026-10-31", "即将到期", 0, "孙八"),
        # 投诉 王芳: last contact 10-28 + 7 = 11-04 → due soon
        ("C00000003", "投诉客户7天内回访"): ("2026-11-04", "即将到期", 0, "王五"),
        # 重要挽留 王芳: 10-28 + 30 → outside the window
    }
    only = due_followups(customers(), log(), as_of=AS_OF, owner="赵六")
    assert set(only["owner"]) == {"赵六"} and len(only) == 1


def test_transitions_keep_reason_and_date():
    out = apply_transitions(customers(), log())
    status = dict(zip(out["customer_id"], out["status"]))
    assert status == {
        "C00000001": "意向客户",
        "C00000002": "意向客户",
        "C00000003": "待成交",
        "C00000004": "成交客户",
        "C00000005": "潜在客户",
    }
    row = out.set_index("customer_id").loc["C00000004"]
    assert row["status_previous"] == "潜在" and row["status_reason"] == "合同签订"
    assert row["status_changed"] == pd.Timestamp("2026-09-01")


def test_bad_rules_file_names_the_problem(tmp_path):
    bad = tmp_path / "f.yaml"
    bad.write_text(
        "rules:\n  - name: x\n    match: {tier: 高价值}\n    every_days: -3\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="every_days"):
        load_followup_rules(bad)
    bad.write_text("rulez: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="rulez"):
        load_followup_rules(bad)


def test_as_of_defaults_to_the_segment_as_of_and_bad_dates_are_input_errors():
    segmented = customers().assign(
        as_of=pd.Timestamp(AS_OF)
    )  # segment output: as_of = latest order day
    tasks = due_followups(segmented, log())  # the log's latest record is 10-29
    assert (
        tasks.set_index(["customer_id", "rule"]).loc[("C00000002", "下次跟进时间"), "days_overdue"]
        == 4
    )
    # no segment as-of and no --as-of: an error, not today's date (nor the log's latest day)
    with pytest.raises(InputError, match="no as-of date"):
        due_followups(customers(), log())
    with pytest.raises(InputError, match="2026-13-01"):
        due_followups(customers(), log(), as_of="2026-13-01")


FOLLOWUP_HEADER = [
    "负责人",
    "客户编号",
    "姓名",
    "到期日",
    "状态",
    "逾期天数",
    "来源",
    "规则",
    "建议动作",
    "最近跟进",
    "最近跟进方式",
    "价值等级",
    "RFM分类",
]


def test_followups_workbook_has_chinese_headers(tmp_path):
    # the task list goes to owners: Chinese headers like the report, one 跟进任务 sheet
    from openpyxl import load_workbook
    from typer.testing import CliRunner

    from custtool.cli import app
    from custtool.io import write_table

    write_table(customers(), tmp_path / "c.parquet")
    write_table(log(), tmp_path / "log.parquet")
    out = tmp_path / "tasks.xlsx"
    r = CliRunner().invoke(
        app,
        [
            "followups",
            str(tmp_path / "c.parquet"),
            "--log",
            str(tmp_path / "log.parquet"),
            "--as-of",
            AS_OF,
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.stderr
    wb = load_workbook(out, read_only=True)
    assert wb.sheetnames == ["跟进任务"]
    rows = list(wb["跟进任务"].iter_rows(values_only=True))
    assert list(rows[0]) == FOLLOWUP_HEADER and len(rows) == 1 + 5
    # Parquet keeps the canonical column names
    r = CliRunner().invoke(
        app,
        [
            "followups",
            str(tmp_path / "c.parquet"),
            "--log",
            str(tmp_path / "log.parquet"),
            "--as-of",
            AS_OF,
            "-o",
            str(tmp_path / "t.parquet"),
        ],
    )
    assert pd.read_parquet(tmp_path / "t.parquet").columns.tolist()[:3] == [
        "owner",
        "customer_id",
        "name",
    ]


def test_a_log_without_times_is_an_input_error():
    # e.g. --log orders.parquet by mistake: one line naming the column, not a KeyError traceback
    orders = pd.DataFrame(
        {
            "order_id": ["O1"],
            "customer_id": ["TB1"],
            "order_time": pd.to_datetime(["2026-10-01"]),
            "amount": [10.0],
        }
    )
    with pytest.raises(InputError, match="time"):
        due_followups(customers(), orders, as_of=AS_OF)
    with pytest.raises(InputError, match="time"):
        apply_transitions(customers(), orders)


def test_task_sheets_one_per_owner_when_long_capped_with_note():
    from custtool.followups import TASK_SHEET, task_sheets

    tasks = pd.DataFrame(
        {
            "owner": ["王五", "王五", "王五", "李四", ""],
            "customer_id": ["C1", "C2", "C3", "C4", "C5"],
        }
    )
    sheets, notes = task_sheets(tasks, 10)
    assert list(sheets) == [TASK_SHEET] and notes == {} and len(sheets[TASK_SHEET]) == 5
    sheets, notes = task_sheets(tasks, 2)
    assert list(sheets) == ["李四", "王五", "（空）"]
    assert sheets["王五"]["客户编号"].tolist() == ["C1", "C2"]
    assert notes == {"王五": "本表列出前 2 行，另有 1 行未列出：完整数据见 followups.csv"}
    assert sheets["（空）"]["客户编号"].tolist() == ["C5"]


def test_tag_rules_match_lists_as_the_text_and_mixed_paths_do():
    """A tags column of lists is matched in Arrow (no explode of a million lists): the same
    rows as the ;-joined text and the mixed column (explode) — hand-checked: rows 0 and 3 hold
    流失风险, row 2 holds 投诉客户 only, rows 1 (empty), 4 (missing) and 5 (a tag containing
    流失风险 but not equal) none."""
    import numpy as np

    from custtool.followups import _list_hits, _matches

    lists = pd.Series(
        [["高价值", "流失风险"], [], ["投诉客户"], np.array(["流失风险"]), None, ["流失风险2"]],
        dtype=object,
    )
    text = pd.Series(["高价值;流失风险", "", "投诉客户", "流失风险", None, "流失风险2"])
    mixed = lists.where(lists.index != 3, "流失风险")  # one cell as text: the explode path
    assert _list_hits(mixed, ["流失风险"]) is None
    assert _list_hits(text, ["流失风险"]) is None
    want = [True, False, False, True, False, False]
    for s in (lists, text, mixed):
        got = _matches(pd.DataFrame({"tags": s}), {"tags": "流失风险"})
        assert got.tolist() == want, s
    both = _matches(pd.DataFrame({"tags": lists}), {"tags": ["流失风险", "投诉客户"]})
    assert both.tolist() == [True, False, True, True, False, False]
