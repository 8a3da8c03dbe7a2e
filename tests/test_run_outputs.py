"""The run's side outputs (issue 12: the whole run's time): the owners' workbooks read only
their attributed-order columns as codes; outputs written beside the next step."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _run_folder(example_run) -> Path:
    d, out = example_run
    return Path(out["folder"])


def _cells(path: Path) -> dict[str, list[tuple]]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    try:
        return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in wb}
    finally:
        wb.close()


def test_owner_workbooks_from_coded_columns_equal_those_from_every_column(example_run, tmp_path):
    """write_owner_workbooks given OWNER_ORDER_COLUMNS as codes (what the run passes) writes
    the same cells as given all six attributed columns as text (what it passed before)."""
    from custtool.pipeline import OWNER_ORDER_COLUMNS, read_attributed
    from custtool.report.owners import write_owner_workbooks

    folder = _run_folder(example_run)
    customers = pd.read_parquet(folder / "customers.parquet")
    # two of the five owners' workbooks (~1 s each, written twice): the customers without an
    # owner (未分配, their own role view) and one named owner's
    owner = customers["owner"].astype("string").fillna("").str.strip()
    named = sorted(set(owner) - {""})
    assert len(named) >= 2 and (owner == "").any()
    customers = customers[(owner == "").to_numpy() | (owner == named[0]).to_numpy()]
    path = folder / "orders_attributed.parquet"
    coded = read_attributed(path, OWNER_ORDER_COLUMNS, codes=True)
    assert list(coded.columns) == list(OWNER_ORDER_COLUMNS)
    assert isinstance(coded["customer_id"].dtype, pd.CategoricalDtype)
    full = read_attributed(path)
    assert len(full.columns) == 6 and len(coded) == len(full)
    a = write_owner_workbooks(customers, tmp_path / "a", orders=full, as_of="2024-06-30")
    b = write_owner_workbooks(customers, tmp_path / "b", orders=coded, as_of="2024-06-30")
    assert [w.path.name for w in a.workbooks] == [w.path.name for w in b.workbooks]
    assert sorted(w.path.stem for w in a.workbooks) == sorted([named[0], "未分配"])
    revenue_seen = False
    for wa, wb in zip(a.workbooks, b.workbooks, strict=True):
        ca, cb = _cells(wa.path), _cells(wb.path)
        assert ca == cb, wa.path.name
        rows = ca["概览"]
        at = [k for k, r in enumerate(rows) if r and r[0] == "月度消费额"]
        # 月度消费额 (from the orders): its month rows (月份, 消费金额, 订单数) follow the header
        months = rows[at[0] + 2 :] if at else []
        revenue_seen |= bool(months) and isinstance(months[0][1], float) and months[0][2] > 0
    assert revenue_seen  # the orders' figures are on the sheets compared


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# the Parquet and CSV files of a run whose side writes run in line equal, byte for byte, those
# written in the second thread: checked by test_pipeline's rerun (which runs in line)


def test_release_memory_only_for_a_large_run(monkeypatch):
    """A run under RELEASE_MEMORY_ROWS input rows skips the collection between its steps (a
    few MB of tables; ~0.1-0.5 s a collection in a fresh process); from the threshold on, and
    when the size is unknown, the memory is handed back."""
    import gc

    from custtool import memory

    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(a) or 0)
    memory.release_memory(99, threshold=100)
    assert calls == []
    memory.release_memory(100, threshold=100)
    assert len(calls) == 1
    memory.release_memory()
    assert len(calls) == 2
    memory.release_memory(memory.RELEASE_MEMORY_ROWS - 1)
    assert len(calls) == 2
    memory.release_memory(memory.RELEASE_MEMORY_ROWS)
    assert len(calls) == 3
    assert memory.RELEASE_MEMORY_ROWS == 100_000


def test_a_failing_side_write_fails_the_run_and_leaves_nothing(example_run, tmp_path, monkeypatch):
    """A write in the second thread that fails (a full disk) fails the run with its own
    error, like a write in line: no run folder, no staging folder, no thread left."""
    import threading

    import pytest

    import custtool.io
    from custtool import pipeline
    from custtool.errors import OutputError

    work, _ = example_run
    real = custtool.io.write_table

    def full_disk(df, path, **kw):
        if Path(path).name == "segmented.parquet":
            raise OutputError(f"{path}: no space left on device", "free some space")
        return real(df, path, **kw)

    monkeypatch.setattr(custtool.io, "write_table", full_disk)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="segmented.parquet: no space left"):
        pipeline.run_pipeline(work / "examples" / "pipeline.yaml", out=out, send=False)
    assert not out.exists() or not [p for p in out.iterdir() if p.is_dir()]
    assert not [t for t in threading.enumerate() if t.name.startswith("custtool-write")]


def test_codes_read_from_dictionary_pages_keep_the_first_appearance_order(tmp_path):
    """read_attributed(codes=True) reads text as the Parquet's dictionary codes; the
    categories are still the values in the order they first appear (only those present),
    as dictionary-encoding the plain text gave them — whatever order (and unused entries)
    the file's dictionaries have, across batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from custtool.pipeline import read_attributed

    # a file whose dictionary lists "z" (unused), then "b", "a": the rows show a, b, c, a
    dictionary = pa.array(["z", "b", "a", "c"])
    path = tmp_path / "dict.parquet"
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.DictionaryArray.from_arrays(
                    pa.array([2, 1, None, 3, 2], pa.int32()), dictionary
                ),
                "amount": [1.0, 2.0, 3.0, 4.0, 5.0],
            }
        ),
        path,
        store_schema=False,  # text in the schema, the dictionary only in the pages
    )
    assert pq.read_schema(path).field("customer_id").type == pa.string()
    # the same values stored plain (no dictionary pages, as DuckDB stores customer ids):
    # read as text and encoded, the same categories and codes
    plain = tmp_path / "plain.parquet"
    pq.write_table(pq.read_table(path), plain, use_dictionary=False, store_schema=False)
    assert not pq.read_metadata(plain).row_group(0).column(0).has_dictionary_page
    assert pq.read_metadata(path).row_group(0).column(0).has_dictionary_page
    for file in (path, plain):
        for batch in (2, 100):
            got = read_attributed(file, ("customer_id", "amount"), codes=True, batch_rows=batch)
            cat = got["customer_id"]
            assert list(cat.cat.categories) == ["a", "b", "c"]
            assert cat.cat.codes.tolist() == [0, 1, -1, 2, 0]
            assert got["amount"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_group_card_top_values_counted_on_codes() -> None:
    """The group cards' "top values" (counted on codes): per segment the k most common
    non-empty values, ties by value, share of the segment's customers; a list item twice
    in one customer's cell counts once; blank and missing values are not counted."""
    from custtool.cards import _top_values

    seg = pd.Series(["A", "A", "A", "A", "B", "B", ""], dtype="string")
    city = pd.Series(["北京", " 上海", "上海", None, "广州", "", "北京"], dtype=object)
    got = _top_values(seg, city, 2, "、")
    assert got.to_dict() == {"": "北京 100%", "A": "上海 50%、北京 25%", "B": "广州 50%"}
    needs = pd.Series(["a;a;b", "b", " c ;", "", None, "a", "c"], dtype="string")
    got = _top_values(seg, needs, 3, "、", explode=True)
    assert got.to_dict() == {"": "c 100%", "A": "b 50%、a 25%、c 25%", "B": "a 50%"}
    assert _top_values(seg, pd.Series([""] * 7, dtype="string"), 2, "、").empty


def test_clean_followup_masked_in_blocks_and_the_workbook_masked_once_capped(
    example_data, tmp_path
):
    """What the run now does with the clean report's 待跟进 list equals what it did: the
    full list masked block by block as it is written (write_csv_blocks) is byte for byte
    write_table(mask_frame(list)); the workbook's sheets capped, then masked, equal the
    sheets masked, then capped (masking is row by row)."""
    from custtool.clean import FOLLOWUP_SHEET, dedupe
    from custtool.io import write_csv_blocks, write_table
    from custtool.report.masking import mask_frame, mask_sheets
    from custtool.xlsx import cap_sheets

    _, _, report = dedupe(example_data.frame("customers"))
    sheets = report.sheets()
    name = FOLLOWUP_SHEET["zh"]
    full = sheets[name]
    assert len(full) > 7  # more rows than the blocks and the cap below
    assert "手机号" in full.columns or "phone" in full.columns
    write_table(mask_frame(full), tmp_path / "before.csv")
    write_csv_blocks(full, tmp_path / "after.csv", lambda b: mask_frame(b), rows=3)
    assert (tmp_path / "after.csv").read_bytes() == (tmp_path / "before.csv").read_bytes()
    # masked: no phone of the list is in the file as it is
    phones = full.get("手机号", full.get("phone")).astype("string").dropna()
    text = (tmp_path / "after.csv").read_text(encoding="utf-8-sig")
    assert not [p for p in phones if len(p) == 11 and p in text]
    files = {name: "clean_followup.csv"}
    before, before_notes = cap_sheets(mask_sheets(sheets), 5, files)
    after, after_notes = cap_sheets(sheets, 5, files)
    after = mask_sheets(after)
    assert list(before) == list(after) and before_notes == after_notes and name in after_notes
    for k in before:
        pd.testing.assert_frame_equal(before[k], after[k])


def test_follow_up_log_linked_once_gives_the_same_status_and_tasks(example_data):
    """The run links the follow-up log once (link_log) for the status changes and the
    tasks; both equal what each gave linking the raw log itself."""
    from custtool.followups import apply_transitions, due_followups, link_log

    tagged = example_data.frame("tagged")
    log = example_data.frame("interactions")
    linked = link_log(tagged, log)
    assert {"source_customer_id", "match_key"} <= set(linked.columns)
    assert 0 < len(linked) <= len(log)
    assert link_log(tagged, linked) is linked  # linked already: as it is
    final = apply_transitions(tagged, log)
    pd.testing.assert_frame_equal(apply_transitions(tagged, linked), final)
    assert (final["status_reason"] != "").any()  # some statuses did change
    raw_tasks = due_followups(final, log)
    assert len(raw_tasks) > 0
    pd.testing.assert_frame_equal(due_followups(final, linked), raw_tasks)


def test_input_hashes_taken_beside_the_import_are_the_files(example_run):
    """The manifest's inputs (hashed in a thread while they are imported): each file's
    SHA-256 and size, in the order and with the keys they had."""
    import hashlib

    _, first = example_run
    assert len(first["inputs"]) == 6
    for entry in first["inputs"]:
        assert list(entry) == ["kind", "path", "channel", "bytes", "sha256"]
        data = Path(entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)
