"""`custtool template KIND`: an Excel import template (客户信息导入模板), SPEC A6.

Headers in Chinese with required markers (*), drop-down validations for enumerations,
an example row, and an instructions sheet. What is filled in imports without mapping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from custtool.errors import InputError
from custtool.fields import KIND_LABELS, KINDS
from custtool.labels import label

# kind -> [(field, required, example, drop-down choices or None, note)]
TEMPLATE_FIELDS: dict[str, list[tuple[str, bool, str, list[str] | None, str]]] = {
    "customers": [
        ("customer_id", False, "C202405001", None, "系统内唯一编号,可留空由系统生成"),
        ("name", True, "张伟", None, "真实姓名或常用称呼"),
        ("phone", True, "13812345678", None, "手机或座机(区号-号码);手机号与邮箱至少填一项"),
        ("email", False, "zhangwei@example.com", None, "手机号与邮箱至少填一项"),
        ("gender", True, "男", ["男", "女", "未知"], "下拉选择"),
        ("age", False, "28", None, "周岁,0-120的整数"),
        ("city", True, "北京市", None, "常驻城市,可精确到区"),
        ("industry", False, "互联网", None, "企业客户必填"),
        ("position", False, "产品经理", None, "企业客户必填"),
        ("customer_type", True, "个人", ["个人", "企业"], "下拉选择"),
        ("company", False, "", None, "企业客户填写"),
        ("first_contact_date", True, "2024-01-15", None, "日期,格式 YYYY-MM-DD"),
        (
            "source_channel",
            True,
            "电商",
            ["电商", "门店", "公众号", "官网", "展会", "转介绍", "其他"],
            "下拉选择",
        ),
        ("owner", True, "王五", None, "负责的销售/客服"),
        ("status", True, "意向", ["潜在", "意向", "成交", "流失"], "下拉选择"),
        ("needs", False, "关注智能家居产品", None, "客户明确提出的需求"),
        ("notes", False, "有定制需求", None, ""),
    ],
    "orders": [
        ("order_id", True, "SO20240501001", None, "订单号,唯一"),
        ("customer_id", False, "C202405001", None, "客户编号、手机号、邮箱至少填一项"),
        ("phone", False, "13812345678", None, ""),
        ("order_time", True, "2024-05-10 14:30", None, "下单的日期与时间,如 2024-05-10 14:30"),
        ("amount", True, "800.00", None, "实付金额(元),退款填负数"),
        ("channel", True, "电商", ["电商", "门店", "公众号", "其他"], "下拉选择"),
        ("category", False, "家居", None, ""),
        ("product", False, "智能台灯", None, ""),
        ("quantity", False, "1", None, ""),
        ("refund", False, "否", ["是", "否"], "退款的订单行填“是”"),
    ],
    "interactions": [
        ("record_id", False, "F0001", None, ""),
        ("customer_id", False, "C202405001", None, "客户编号、手机号、邮箱至少填一项"),
        ("phone", False, "13812345678", None, ""),
        ("time", True, "2024-05-12 10:30", None, "跟进的日期与时间"),
        (
            "method",
            True,
            "电话",
            ["电话", "拜访", "邮件", "线上会议", "咨询", "投诉", "活动"],
            "下拉选择",
        ),
        ("content", True, "介绍新品", None, ""),
        (
            "result",
            True,
            "需跟进",
            ["有意向", "需跟进", "暂无意向", "报价单已发送", "合同签订"],
            "下拉选择",
        ),
        ("next_follow_up", False, "2024-05-20", None, "计划下一次联系的日期"),
        ("staff", True, "王五", None, "负责这次联系的员工"),
    ],
    "surveys": [
        ("customer_id", False, "C202405001", None, "客户编号、手机号、邮箱至少填一项"),
        ("phone", False, "13812345678", None, ""),
        ("time", True, "2024-05-12", None, "问卷的填写日期"),
        ("score", True, "9", [str(i) for i in range(11)], "推荐意愿 0-10 分"),
        ("satisfaction", False, "5", ["1", "2", "3", "4", "5"], "满意度 1-5 分"),
        ("comments", False, "配送很快", None, ""),
    ],
}


def write_template(kind: str, path: str | os.PathLike[str]) -> Path:
    """Write the import template of ``kind`` to ``path`` (.xlsx), atomically."""
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    target = Path(path)
    if target.suffix.lower() != ".xlsx":
        raise InputError(
            f"{target.name}: a template is an .xlsx workbook", "name the output *.xlsx"
        )
    from xlsxwriter.utility import xl_col_to_name

    from custtool.xlsx import CellWriter, open_workbook

    spec = TEMPLATE_FIELDS[kind]
    with open_workbook(target) as wb:
        cw = CellWriter(wb)
        ws = wb.add_worksheet(f"{KIND_LABELS[kind]}导入")
        lists = wb.add_worksheet("选项")
        guide = wb.add_worksheet("填写说明")
        text = wb.add_format({"num_format": "@"})  # text: phones and ids keep their digits
        heads = {
            req: wb.add_format(
                {
                    "bold": True,
                    "font_color": "#C00000" if req else "#000000",
                    "bg_color": "#FCE4D6" if req else "#DDEBF7",
                    "align": "center",
                }
            )
            for req in (True, False)
        }
        for j, (field, required, example, choices, note) in enumerate(spec):
            letter = xl_col_to_name(j)
            ws.set_column(j, j, max(12, len(label(field)) * 2 + 4), text)
            ws.write_string(0, j, label(field) + ("*" if required else ""), heads[required])
            if note:
                ws.write_comment(0, j, note, {"author": "custtool"})
            cw.cell(ws, 1, j, example, text)
            if choices:
                for i, choice in enumerate(choices):
                    cw.cell(lists, i, j, choice)
                ws.data_validation(1, j, 1000, j, {
                    "validate": "list",
                    "source": f"='选项'!${letter}$1:${letter}${len(choices)}",
                    "ignore_blank": not required,
                    "error_title": "无效的值",
                    "error_message": f"请从下拉列表中选择:{'/'.join(choices)}",
                })  # fmt: skip
        ws.freeze_panes(1, 0)
        lists.hide()
        guide.set_column(0, 0, 22)
        guide.set_column(1, 1, 10)
        guide.set_column(2, 2, 60)
        bold = wb.add_format({"bold": True})
        rows: list[list[str]] = [
            [f"{KIND_LABELS[kind]}导入模板 — 填写说明"],
            [],
            ["字段", "必填", "说明"],
        ]
        for field, required, _example, choices, note in spec:
            extra = f"(可选:{'/'.join(choices)})" if choices else ""
            rows.append([label(field), "是" if required else "否", (note + extra) or "-"])
        rows += [
            [],
            ["1. 带 * 的列为必填;第2行为示例,导入前可删除或覆盖。"],
            ["2. 手机号请按文本填写(单元格已设为文本格式),不要写成科学计数法。"],
            ["3. 日期请用 YYYY-MM-DD;金额填数字,单位为元。"],
            ["4. 导入:custtool import 本文件.xlsx -o 输出.parquet"],
            ["5. 请依法收集个人信息(《个人信息保护法》),仅用于告知客户的用途。"],
        ]
        for r, values in enumerate(rows):
            for c, v in enumerate(values):
                cw.cell(guide, r, c, v, bold if r == 2 else None)
        guide.write_string(0, 0, rows[0][0], wb.add_format({"bold": True, "font_size": 14}))
    return target


#: the example row's fields that say who or what a row is (kept as written by the import)
_IDENTITY_FIELDS = ("order_id", "record_id", "customer_id", "phone", "email", "name")


def template_example_rows(frame: Any, kind: str) -> list[int]:
    """The ``_row`` numbers of imported rows that are the template's example row of ``kind``
    (every identity field the frame has, at least two, holds the example's value), so the
    import can say so: a template filled below its example row, the example left in."""
    spec = {f: example for f, _req, example, _c, _n in TEMPLATE_FIELDS.get(kind, [])}
    fields = [f for f in _IDENTITY_FIELDS if spec.get(f) and f in frame.columns]
    if len(fields) < 2 or not len(frame) or "_row" not in frame.columns:
        return []
    hit = None
    for f in fields:
        eq = frame[f].eq(spec[f]).fillna(False).to_numpy(dtype=bool)
        hit = eq if hit is None else hit & eq
        if not hit.any():
            return []
    return [int(r) for r in frame["_row"].to_numpy()[hit]]
