"""The sales funnel (SPEC D9): hand-checked stages, conversion rates, per owner and channel.

    customer  status    follow-up results (time)            orders  stage  lost   owner  channel
    K1        潜在客户   —                                    —       潜在   no     王     抖音
    K2        潜在客户   有意向 (06-01)                        —       意向   no     王     抖音
    K3        意向客户   需跟进 (06-01), 明确拒绝 (06-10)       —       意向   yes    李     抖音
    K4        待成交     —                                    —       意向   no     李     门店
    K5        (none)    —                                    1       成交   no     李     门店
    K6        成交客户   合同签订 (07-15, after the as-of day)  —       成交   no     王     门店
    K7        流失客户   —                                    —       潜在   yes    (none) 门店

all: 潜在 7, 意向 5 (5/7 = 0.7143), 成交 2 (2/5 = 0.4, overall 2/7 = 0.2857), 流失 2
王 (K1, K2, K6): 潜在 3, 意向 2 (0.6667), 成交 1 (0.5); 李 (K3–K5): 3, 3 (1.0), 1 (0.3333)
"""

from __future__ import annotations

import json

import pandas as pd

from custtool.funnel import sales_funnel


def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"K{i}" for i in range(1, 8)],
            "phone": [f"139110628{i:02d}" for i in range(1, 8)],
            "status": ["潜在客户", "潜在客户", "意向客户", "待成交", None, "成交客户", "流失客户"],
            "frequency": [0, 0, 0, 0, 1, 0, 0],
            "owner": ["王", "王", "李", "李", "李", "王", ""],
            "source_channel": ["抖音", "抖音", "抖音", "门店", "门店", "门店", "门店"],
        }
    )


def followups() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["K2", "K3", "K3", "K6", "ZZ"],
            "time": pd.to_datetime(
                ["2024-06-01", "2024-06-01", "2024-06-10", "2024-07-15", "2024-06-01"]
            ),
            "result": ["有意向", "需跟进", "明确拒绝", "合同签订", "有意向"],
        }
    )


def rows(res, dim, group):
    t = res.table
    t = t[(t["dimension"] == dim) & (t["group"] == group)].set_index("stage")
    return t


def test_funnel_hand_checked():
    res = sales_funnel(customers(), followups(), as_of="2024-06-30")
    per = res.customers.set_index("customer_id")
    assert per["funnel_stage"].tolist() == ["潜在", "意向", "意向", "意向", "成交", "成交", "潜在"]
    assert per["lost"].tolist() == [False, False, True, False, False, False, True]
    a = rows(res, "all", "全部")
    assert a["customers"].to_dict() == {"潜在": 7, "意向": 5, "成交": 2, "流失": 2}
    assert a.loc["意向", "conversion"] == 0.7143
    assert a.loc["成交", "conversion"] == 0.4
    assert a.loc["成交", "overall"] == 0.2857
    assert pd.isna(a.loc["潜在", "conversion"])
    w = rows(res, "owner", "王")
    assert w["customers"].to_dict() == {"潜在": 3, "意向": 2, "成交": 1, "流失": 0}
    assert w.loc["意向", "conversion"] == 0.6667 and w.loc["成交", "conversion"] == 0.5
    li = rows(res, "owner", "李")
    assert li["customers"].to_dict() == {"潜在": 3, "意向": 3, "成交": 1, "流失": 1}
    assert li.loc["成交", "conversion"] == 0.3333
    assert rows(res, "owner", "（未分配）")["customers"].to_dict()["潜在"] == 1
    d = rows(res, "channel", "门店")
    assert d["customers"].to_dict() == {"潜在": 4, "意向": 3, "成交": 2, "流失": 1}
    assert res.followups_used == 3  # K6's result is after the as-of day, ZZ matches no one


def test_funnel_without_followups_or_as_of():
    res = sales_funnel(customers())
    a = rows(res, "all", "全部")
    # K6 is 成交 by its status alone; K2 stays 潜在, K3 意向 (status)
    assert a["customers"].to_dict() == {"潜在": 7, "意向": 4, "成交": 2, "流失": 1}
    res = sales_funnel(customers(), followups())  # no as-of: every result counts
    assert rows(res, "all", "全部")["customers"]["成交"] == 2


def test_funnel_json_and_cli(tmp_path):
    from typer.testing import CliRunner

    from custtool.cli import app

    res = sales_funnel(customers(), followups(), as_of="2024-06-30")
    d = res.to_dict()
    assert d["stages"]["成交"] == {"customers": 2, "conversion": 0.4, "overall": 0.2857}
    assert d["by_owner"]["李"]["意向"]["conversion"] == 1.0
    c, f = tmp_path / "c.parquet", tmp_path / "f.parquet"
    customers().to_parquet(c)
    followups().to_parquet(f)
    r = CliRunner().invoke(
        app, ["funnel", str(c), "--followups", str(f), "--as-of", "2024-06-30", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stages"] == json.loads(json.dumps(d["stages"]))


def test_funnel_and_pivot_quiet_with_output_and_plain_when_piped(tmp_path):
    # funnel -o funnel.csv --quiet printed the funnel table on stdout anyway; funnel and pivot
    # drew box characters when piped (the summaries on stderr are plain, print_table)
    import subprocess
    import sys

    from typer.testing import CliRunner

    from custtool.cli import app

    c, out = tmp_path / "c.parquet", tmp_path / "funnel.csv"
    customers().to_parquet(c)
    r = CliRunner().invoke(app, ["funnel", str(c), "--as-of", "2024-06-30", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert r.output == "" and out.exists()
    for args in (["funnel", str(c), "--as-of", "2024-06-30"], ["pivot", str(c), "--rows", "owner"]):
        p = subprocess.run(
            [sys.executable, "-m", "custtool", *args], capture_output=True, text=True, timeout=120
        )
        assert p.returncode == 0, p.stderr
        assert "李" in p.stdout and not set(p.stdout) & set("┏┃━│└┡"), p.stdout


def test_report_funnel_sheet_equals_the_funnel(tmp_path):
    import openpyxl

    from custtool.report import write_workbook

    path = tmp_path / "r.xlsx"
    rep = write_workbook(
        customers(), path, interactions=followups(), as_of="2024-06-30", mask=False
    )
    assert rep.sheets["销售漏斗"] == 24  # 4 stages × (全部 + 王/李/（未分配） + 抖音/门店)
    ws = openpyxl.load_workbook(path, read_only=True)["销售漏斗"]
    got = [r for r in ws.iter_rows(values_only=True)]
    assert got[0][:4] == ("维度", "分组", "阶段", "客户数")
    table = sales_funnel(customers(), followups(), as_of="2024-06-30").table
    assert [r[3] for r in got[1:]] == table["customers"].tolist()
    assert got[1:5] == (
        [("全部", "全部", "潜在", 7, None, 1.0)]
        + [("全部", "全部", "意向", 5, 0.7143, 0.7143)]
        + [("全部", "全部", "成交", 2, 0.4, 0.2857)]
        + [("全部", "全部", "流失", 2, None, 0.2857)]
    )


def test_a_linked_log_gives_the_same_funnel_without_matching_again(monkeypatch):
    """The run links its follow-up log once (followups.link_log) and hands the linked rows
    to the report: the funnel reads them by customer id, the same stages and counts as
    from the raw log (matched here by phone too), and never calls the matcher again."""
    import custtool.attribution as A
    from custtool.followups import link_log

    raw = followups()
    raw.loc[0, "customer_id"] = ""  # K2's record carries only K2's phone
    raw["phone"] = ["13911062802", "", "", "", ""]
    # the customers in another order than the log was linked against: looked up by id
    cust = customers().iloc[::-1].reset_index(drop=True)
    from_raw = sales_funnel(cust, raw, as_of="2024-06-30")
    linked = link_log(customers(), raw)
    assert "K2" in set(linked["customer_id"]) and len(linked) == 4  # ZZ matches nobody

    def no_match(*a, **kw):
        raise AssertionError("matched again")

    monkeypatch.setattr(A, "attribute", no_match)
    from_linked = sales_funnel(cust, linked, as_of="2024-06-30")
    pd.testing.assert_frame_equal(from_linked.table, from_raw.table)
    pd.testing.assert_frame_equal(from_linked.customers, from_raw.customers)
    assert from_linked.followups_used == from_raw.followups_used == 3  # K6's is after as-of
