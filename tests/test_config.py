"""The one YAML loader, the typed config models, defaults only in rules/*.yaml, and the one
as-of rule (issue 11)."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from custtool.cli import app
from custtool.config import load_yaml, overlay, read_yaml
from custtool.dates import resolve_as_of
from custtool.errors import ConfigError, InputError
from custtool.segment import load_segment_config, segment_customers

runner = CliRunner()


# --------------------------------------------------------------------------- the loader
def test_read_yaml_keeps_the_line_of_every_key(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("a:\n  b: 1\n  c:\n    - x\n    - {d: 2}\n", encoding="utf-8")
    doc = read_yaml(p)
    assert doc.data == {"a": {"b": 1, "c": ["x", {"d": 2}]}}
    assert doc.lines[("a",)] == 1 and doc.lines[("a", "b")] == 2 and doc.lines[("a", "c", 1)] == 5
    assert doc.lines[("a", "c", 1, "d")] == 5
    assert doc.line(("a", "c", 0, "missing")) == 4  # the nearest parent's line


def test_python_tags_are_refused_with_the_line(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("ok: 1\nx: !!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"evil\.yaml:2: YAML tag refused"):
        load_yaml(p)


def test_overlay_merges_mappings_key_by_key_and_replaces_the_rest():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    assert overlay(base, {"a": {"y": [3]}, "c": 4}) == {"a": {"x": 1, "y": [3]}, "b": 2, "c": 4}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 2}  # not changed in place


# a bad key in each kind of YAML: file:line: key.path: what is wrong
def _segments(p):
    return load_segment_config(p)


def _clean(p):
    from custtool.clean import load_clean_rules

    return load_clean_rules(p)


def _followups(p):
    from custtool.followups import load_followup_rules

    return load_followup_rules(p)


def _roles(p):
    from custtool.report.masking import load_roles

    return load_roles(p)


def _strategies(p):
    from custtool.report.strategies import load_strategies

    return load_strategies(p)


def _pipeline(p):
    from custtool.pipeline import load_pipeline

    (p.parent / "o.csv").write_text("x\n", encoding="utf-8")
    return load_pipeline(p)


def _tags(p):
    from custtool.tags import load_rules

    return load_rules(p)


BAD = [
    (
        _segments,
        "timezone: Asia/Shanghai\nmetrics:\n  window: 365d\n  widnow: 30d\n",
        4,
        "metrics.widnow: unknown key",
    ),
    (
        _segments,
        "lifecycle:\n  new_days: soon\n",
        2,
        "lifecycle.new_days: 'soon' is not a duration",
    ),
    (
        _segments,
        "tiers:\n  method: best\n",
        2,
        "tiers.method: Input should be 'thresholds' or 'top'",
    ),
    (_clean, "hub_max_names: 3\nfuzzy:\n  treshold: 80\n", 3, "fuzzy.treshold: unknown key"),
    (
        _clean,
        "fill:\n  - {field: owner}\n",
        2,
        "fill[0]: a fill rule needs exactly one of value: or from:",
    ),
    (
        _followups,
        "rules:\n  - name: x\n    match: {tier: 高价值}\n    every_days: -3\n",
        4,
        "rules[0].every_days: Input should be greater than 0",
    ),
    (_roles, "roles:\n  x:\n    amounts: false\n    hide: [a]\n", 4, "roles.x.hide: unknown key"),
    (
        _strategies,
        "tier:\n  高价值:\n    目标: 提升\n    budget: 1\n",
        4,
        "tier.高价值.budget: unknown key",
    ),
    (
        _pipeline,
        "inputs:\n  orders: [o.csv]\nsegment:\n  windw: 30d\n",
        4,
        "segment.windw: unknown key",
    ),
    (
        _pipeline,
        "inputs:\n  orders:\n    - {path: o.csv, chanel: x}\n",
        3,
        "inputs.orders[0].chanel: unknown key",
    ),
    (
        _pipeline,
        "as_of: 2024-13-01\ninputs:\n  orders: [o.csv]\n",
        1,
        "not valid YAML ('2024-13-01': month must be in 1..12)",
    ),
    (
        _pipeline,
        "as_of: 31.12.2024\ninputs:\n  orders: [o.csv]\n",
        1,
        "as_of: Input should be a valid date",
    ),
]


@pytest.mark.parametrize(
    ("load", "text", "line", "what"),
    BAD,
    ids=[f"{b[0].__name__[1:]}-{i}" for i, b in enumerate(BAD)],
)
def test_a_bad_key_names_file_line_and_key(tmp_path, load, text, line, what):
    p = tmp_path / "my.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load(p)
    msg = err.value.message
    assert msg.startswith(f"{p}:{line}: {what}"), msg
    assert (
        "\n" not in msg and "pydantic" not in msg.lower() and "validation error" not in msg.lower()
    )


def test_a_bad_key_in_the_tag_library_names_file_line_and_key(tmp_path):
    from custtool.tags import check_rules

    p = tmp_path / "tags.yaml"
    p.write_text(
        "version: 1\nlevels: 3\ntags:\n  - {name: a, path: [x], condition: age > 3}\n",
        encoding="utf-8",
    )
    [problem] = check_rules(p)
    assert str(problem) == "tags.yaml:2: levels: unknown key"
    assert problem.hint == "allowed keys here: version, fields, tags"


def test_unknown_key_hint_lists_the_allowed_keys(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("rfm:\n  methd: quantile\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_segment_config(p)
    assert err.value.hint == "allowed keys here: method, thresholds, weights"


def test_cli_shows_one_line_not_a_traceback(tmp_path):
    cfg = tmp_path / "seg.yaml"
    cfg.write_text("metrics:\n  window: 365d\n  growth_window: often\n", encoding="utf-8")
    orders = tmp_path / "o.csv"
    orders.write_text(
        "order_id,customer_id,order_time,amount\n1,A,2024-01-01,10\n", encoding="utf-8"
    )
    result = runner.invoke(app, ["segment", "--orders", str(orders), "--config", str(cfg)])
    assert result.exit_code == 2
    assert f"{cfg}:3: metrics.growth_window: 'often' is not a duration" in result.stderr
    assert "Traceback" not in result.stderr and "ValidationError" not in result.stderr


# --------------------------------------------------------------------------- defaults only in rules/*.yaml
def test_a_user_file_overlays_the_shipped_one_key_by_key(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("metrics:\n  growth_window: 90d\n", encoding="utf-8")
    shipped, mine = load_segment_config(), load_segment_config(p)
    assert mine["metrics"] == {"window": "365d", "growth_window": "90d"}
    assert {k: v for k, v in mine.items() if k != "metrics"} == {
        k: v for k, v in shipped.items() if k != "metrics"
    }


def test_a_roles_file_adds_roles_and_changes_settings_of_shipped_ones(tmp_path):
    from custtool.report.masking import load_roles

    p = tmp_path / "roles.yaml"
    p.write_text(
        "roles:\n  boss:\n    allow_unmask: true\n  analyst:\n    amounts: false\n",
        encoding="utf-8",
    )
    roles, shipped = load_roles(p), load_roles()
    assert set(roles) == set(shipped) | {"boss"} and roles["boss"].allow_unmask
    assert roles["analyst"].amounts is False and roles["analyst"].hide_columns == shipped[
        "analyst"
    ].hide_columns == ("id_number", "bank_card")
    assert roles["sales"] == shipped["sales"]


def test_shipped_defaults_are_the_yaml_values():
    from custtool.clean import load_clean_rules
    from custtool.followups import load_followup_rules

    seg = load_segment_config()
    assert seg["metrics"]["growth_window"] == "365d"  # was None in a Python default dict
    assert seg["rfm"]["thresholds"]["monetary"] == [1000, 3000, 10000, 30000]
    assert load_clean_rules().channel_priority == ("门店", "电商", "公众号")
    assert load_followup_rules().due_soon_days == 7


def _growth_orders() -> pd.DataFrame:
    # as of 2024-12-31. A: 100 on 2023-06-01 (previous 365d window), 100 on 2024-06-01
    # (in the 365d window, not in the last 180d) and 100 on 2024-11-01.
    return pd.DataFrame(
        {
            "order_id": ["1", "2", "3", "4"],
            "customer_id": ["A", "A", "A", "B"],
            "order_time": pd.to_datetime(["2023-06-01", "2024-06-01", "2024-11-01", "2024-12-31"]),
            "amount": [100.0, 100.0, 100.0, 50.0],
        }
    )


def test_growth_uses_the_yaml_growth_window_not_the_f_m_window(tmp_path):
    # window 180d for F and M; growth over rules/segments.yaml's 365d: 200 vs 100 → +100%.
    # (With the growth window falling back to 180d it would be 100 vs 100 → 0.)
    res = segment_customers(_growth_orders(), window="180d", as_of="2024-12-31")
    a = res.customers.set_index("customer_id").loc["A"]
    assert a["frequency"] == 1 and a["monetary"] == 100.0
    assert a["growth"] == pytest.approx(1.0)
    # the CLI builds the same settings: its growth equals the library's
    orders = tmp_path / "o.parquet"
    _growth_orders().to_parquet(orders)
    out = tmp_path / "seg.parquet"
    result = runner.invoke(
        app,
        [
            "segment",
            "--orders",
            str(orders),
            "--window",
            "180d",
            "--as-of",
            "2024-12-31",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    cli = pd.read_parquet(out).set_index("customer_id")
    assert cli.loc["A", "growth"] == pytest.approx(1.0)
    pd.testing.assert_series_equal(
        cli["potential"].sort_index(),
        res.customers.set_index("customer_id")["potential"].sort_index(),
        check_dtype=False,
    )


# --------------------------------------------------------------------------- the one as-of rule
def test_resolve_as_of_explicit_else_latest_order_day():
    orders = pd.DataFrame(
        {
            "order_time": pd.to_datetime(
                ["2024-03-01 10:00", "2024-05-01 18:00", None]
            ).tz_localize("UTC")
        }
    )
    assert resolve_as_of("2024-01-02", orders) == pd.Timestamp("2024-01-02")
    # 2024-05-01 18:00 UTC is 2024-05-02 02:00 in Shanghai: the firm's day
    assert resolve_as_of(None, orders, tz="Asia/Shanghai") == pd.Timestamp("2024-05-02")
    assert resolve_as_of(None, pd.Series(["2024-06-30", "2024-06-30"])) == pd.Timestamp(
        "2024-06-30"
    )
    assert resolve_as_of(None, None, required=False) is None
    with pytest.raises(InputError, match="no as-of date"):
        resolve_as_of(None, pd.DataFrame({"order_time": pd.to_datetime([None])}))


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1899-12-31", "2101-01-01"])
def test_as_of_outside_the_readable_years_is_exit_2_not_3(tmp_path, day):
    # pandas parses year 9999 (as seconds) but the nanosecond columns after it cannot hold it:
    # it was an OutOfBoundsDatetime and exit 3 in segment, followups and run
    with pytest.raises(InputError, match="out of range"):
        resolve_as_of(day)
    orders = tmp_path / "orders.parquet"
    pd.DataFrame(
        {
            "order_id": ["O1", "O2"],
            "customer_id": ["C1", "C2"],
            "order_time": pd.to_datetime(["2024-01-05", "2024-02-05"]),
            "amount": [100.0, 200.0],
        }
    ).to_parquet(orders)
    out = tmp_path / "seg.parquet"
    r = runner.invoke(app, ["segment", "--orders", str(orders), "--as-of", day, "-o", str(out)])
    assert r.exit_code == 2, r.output
    assert f"--as-of '{day}' is out of range" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_a_duration_beyond_the_readable_years_is_exit_2_not_3(tmp_path):
    # --window 99999999999999999999d built an array of that many days: ValueError, exit 3
    from custtool.dates import MAX_DAYS, parse_days

    assert parse_days("200y") == MAX_DAYS
    for value in ("99999999999999999999d", "201y", float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="longer than the 73,000 days|not a duration"):
            parse_days(value)
    orders = tmp_path / "orders.parquet"
    pd.DataFrame(
        {
            "order_id": ["O1"],
            "customer_id": ["C1"],
            "order_time": pd.to_datetime(["2024-01-05"]),
            "amount": [100.0],
        }
    ).to_parquet(orders)
    args = ["segment", "--orders", str(orders), "--window", "99999999999999999999d"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "longer than the 73,000 days" in r.output


@pytest.fixture
def frozen_clock(monkeypatch):
    """Today is 2031-01-01: any use of the clock would show in the results."""
    future = pd.Timestamp("2031-01-01")
    monkeypatch.setattr(pd.Timestamp, "today", classmethod(lambda cls, *a, **k: future))
    monkeypatch.setattr(pd.Timestamp, "now", classmethod(lambda cls, *a, **k: future))


def _segmented() -> pd.DataFrame:
    return segment_customers(_growth_orders(), window="180d").customers


def test_tags_use_the_segment_as_of_not_today(frozen_clock):
    from custtool.tags import evaluate_condition, tag_customers

    seg = _segmented()
    assert (seg["as_of"] == pd.Timestamp("2024-12-31")).all()  # the latest order day
    # A last bought 2024-11-01: 60 days before the as-of date (not ~6 years before 2031)
    days = evaluate_condition(seg, "days_since(last_order) == 60")
    assert days.tolist() == [True, False]
    again = tag_customers(seg).customers
    assert (
        again["tags"].map(list).tolist()
        == tag_customers(seg, as_of="2024-12-31").customers["tags"].map(list).tolist()
    )


def test_tags_without_an_as_of_are_an_error_not_today(frozen_clock):
    from custtool.tags import evaluate_condition

    seg = _segmented().drop(columns=["as_of"])
    with pytest.raises(InputError, match="as-of"):
        evaluate_condition(seg, "days_since(last_order) < 90")
    assert evaluate_condition(seg, "days_since(last_order) < 90", as_of="2024-12-31").tolist() == [
        True,
        True,
    ]


def test_followups_use_the_segment_as_of_not_today(frozen_clock):
    from custtool.followups import due_followups

    seg = _segmented().assign(owner="王五", name=["甲", "乙"])
    log = pd.DataFrame(
        {
            "customer_id": ["A"],
            "time": pd.to_datetime(["2024-12-20"]),
            "method": ["电话"],
            "result": ["需跟进"],
            "next_follow_up": pd.to_datetime(["2024-12-25"]),
            "staff": ["王五"],
        }
    )
    tasks = due_followups(seg, log)
    row = tasks.set_index("rule").loc["下次跟进时间"]
    # due 2024-12-25, as of 2024-12-31 (the segment's), not 2031: 6 days overdue
    assert row["days_overdue"] == 6 and row["state"] == "逾期"
    with pytest.raises(InputError, match="no as-of date"):
        due_followups(seg.drop(columns=["as_of"]), log)


def test_library_defaults_follow_the_shipped_yaml_not_a_python_copy(monkeypatch):
    """Change the shipped settings and every library default follows (no second copy)."""
    import custtool.config as config
    from custtool.metrics import customer_metrics
    from custtool.rfm import assign_lifecycle, rfm_scores, value_tiers

    settings = config.segment_settings()
    settings["tiers"]["high"], settings["tiers"]["mid"] = 150, 60
    settings["metrics"]["growth_window"] = "180d"
    settings["rfm"]["weights"] = {"r": 2, "f": 0, "m": 0}
    settings["lifecycle"]["potential_growth"] = 5.0
    monkeypatch.setattr(config, "_shipped_segment_settings", lambda: settings)
    m, _ = customer_metrics(_growth_orders(), as_of="2024-12-31")
    m = m.set_index("customer_id")
    # A: 365d window 200 (06-01, 11-01); growth over 180d: 100 (11-01) vs 100 (06-01) → 0
    assert m.loc["A", "monetary"] == 200 and m.loc["A", "growth"] == pytest.approx(0.0)
    assert value_tiers(m.assign(monetary_365d=[200.0, 50.0])).tolist() == ["高价值", "低价值"]
    scores = rfm_scores(m)
    assert (scores["rfm_score"] == 2 * scores["r_score"]).all()
    assert not assign_lifecycle(m.assign(growth=[4.0, 4.0]))["potential"].any()
