"""Normalisers for the values of Chinese customer exports (SPEC B1, the reject contract).

Each normaliser takes a Series of text (as read: every cell text) and returns a pair
``(values, problems)``: the normalised Series and a Series of problem codes ("" when the
value is fine or blank). Invalid values become empty ("" or NaN/NaT); the caller keeps
the code as a flag. Everything is whole-column string/regex work: no per-row loops,
except the rare foreign phone number that only the phonenumbers library can format.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from custtool.engines.sql import MAX_AMOUNT

# --------------------------------------------------------------------------- problem codes
#: code -> (中文, English): the reasons a person reads in the rejects file
PROBLEMS: dict[str, tuple[str, str]] = {
    "phone_invalid": ("手机号/电话格式无效", "phone number is not a valid mobile or landline"),
    "phone_masked": ("手机号已打码,无法使用", "phone number is masked (****)"),
    "phone_placeholder": (
        "手机号为占位文字(无/暂无/不详)",
        "phone is a placeholder (无/暂无/不详)",
    ),
    "phone_letters": ("手机号含字母", "phone number contains letters"),
    "phone_dummy": (
        "电话为占位号码(同一数字、全零号码或已知假号码)",
        "phone is a placeholder number (one repeated digit, zeros, a known dummy)",
    ),
    "excel_precision_lost": (
        "数字被Excel科学计数法截断,已丢失位数",
        "Excel scientific notation lost digits",
    ),
    "email_invalid": ("邮箱格式无效", "email address is not valid"),
    "date_invalid": ("日期无效或无法识别", "date is invalid or not recognised"),
    "gender_unknown_value": ("性别无法识别,记为未知", "gender value not recognised, set to 未知"),
    "amount_invalid": ("金额无法识别", "amount is not a number"),
    "name_honorific": ("姓名仅为称呼(如张先生)", "name is only a surname with an honorific"),
    "name_missing": ("姓名为空", "name is empty"),
    "age_invalid": ("年龄无效", "age is not a whole number between 0 and 120"),
    "score_invalid": ("评分不在0-10之间或为空", "score is blank or not between 0 and 10"),
    "number_invalid": ("数值无法识别", "value is not a number"),
    "id_number_invalid": (
        "身份证号无效(位数、出生日期或GB 11643校验位不符)",
        "ID number invalid (length, birth date or GB 11643 check digit)",
    ),
    "bank_card_invalid": (
        "银行卡号无效(12-19位数字, Luhn校验不符)",
        "bank card number invalid (12-19 digits, Luhn check)",
    ),
    "bool_invalid": ("是/否值无法识别", "yes/no value not recognised"),
    "refund_without_order": (
        "退款行在本文件中找不到原订单(会减少消费金额)",
        "refund line whose order is not in this export (it lowers spend)",
    ),
    "no_contact": (
        "无有效手机号或邮箱(至少需要一项)",
        "no valid phone or email (at least one is required)",
    ),
    "no_customer_key": (
        "无法关联客户:客户编号、手机号、邮箱均为空或无效",
        "no customer key: id, phone and email are all empty or invalid",
    ),
    "time_missing": ("时间为空或无效", "time is empty or invalid"),
    "amount_missing": ("金额为空或无效", "amount is empty or invalid"),
}

_BLANKS = {"", "nan", "none", "null", "nat", "n/a", "na", "#n/a"}
_PLACEHOLDERS = {
    "无",
    "暂无",
    "不详",
    "未知",
    "没有",
    "空",
    "-",
    "--",
    "/",
    "无号码",
    "未提供",
    "不提供",
    "保密",
}


def _arrow(t: pd.Series) -> Any:
    """The pyarrow string array behind a Series (no copy when it is Arrow-backed)."""
    import pyarrow as pa

    try:
        arr = pa.array(t.array)
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            return arr
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        pass
    return pa.array(t.astype(object).where(t.notna(), None).tolist(), type=pa.string())


def _from_arrow(arr: Any, index: pd.Index) -> pd.Series:
    """A ``str`` Series over a pyarrow string array (no copy, no Python objects)."""
    return pd.Series(arr, index=index, dtype="str")


#: problem codes of a column kept sparse: (rows with a code, increasing; their codes)
Codes = tuple[np.ndarray, np.ndarray]


def _no_codes() -> Codes:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)


def code_rows(problems: np.ndarray) -> np.ndarray:
    """The rows of a row-sized array of problem codes that hold one (a missing code is none)."""
    hits = np.flatnonzero(problems != "")
    if len(hits) and pd.isna(problems[hits]).any():
        hits = hits[~pd.isna(problems[hits])]
    return hits


def _dense(n: int, codes: Codes) -> np.ndarray:
    """The problem codes as a row-sized object array ("" where none)."""
    out = np.full(n, "", dtype=object)
    out[codes[0]] = codes[1]
    return out


def _with_dense(fn: Any, s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A normaliser giving (values, sparse codes) as the public (values, problems) pair."""
    values, codes = fn(s)
    return values, pd.Series(_dense(len(s), codes), index=s.index, dtype=object)


def _on_given(fn: Any, s: pd.Series) -> tuple[pd.Series, Codes]:
    """``fn(s)`` for a normaliser (values, sparse codes) that gives ("", none) on an empty
    cell, run on the non-empty cells only when most cells are empty (a column filled in
    for few customers, such as e-mail), the results put back in place."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pd.api.types.is_string_dtype(s) and s.dtype != object):
        return fn(s)
    arr = _arrow(s)
    given = np.asarray(
        pc.greater(pc.binary_length(arr), 0).to_numpy(zero_copy_only=False), dtype=bool
    )
    if given.sum() * 2 > len(s):
        return fn(s)
    at = np.flatnonzero(given)
    values, (hits, codes) = fn(_from_arrow(arr.filter(pa.array(given)), s.index[at]))
    return _from_arrow(_scatter_text(_arrow(values), at, len(s)), s.index), (at[hits], codes)


def _scatter_text(values: Any, at: np.ndarray, n: int) -> Any:
    """A string array of length ``n`` holding ``values`` (no nulls) at the increasing
    positions ``at`` and "" elsewhere, over the same character data (no copy of it)."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.large_string())
    if values.null_count:
        raise ValueError("values with nulls")
    off = np.frombuffer(values.buffers()[1], dtype=np.int64)[
        values.offset : values.offset + len(values) + 1
    ]
    lengths = np.zeros(n, dtype=np.int64)
    lengths[at] = np.diff(off)
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = off[0] if len(off) else 0
    np.cumsum(lengths, out=offsets[1:])
    offsets[1:] += offsets[0]
    data = values.buffers()[2] if len(values) else pa.py_buffer(b"")
    return pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), data])


def _text_arrow(s: pd.Series) -> Any:
    """:func:`_text` as a pyarrow string array (no nulls)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = s if pd.api.types.is_string_dtype(s) and s.dtype != object else s.astype("str")
    arr = pc.utf8_trim_whitespace(pc.utf8_normalize(pc.fill_null(_arrow(t), ""), "NFKC"))
    # the blank words are ASCII, 1 to 4 bytes: lower-case and look up only such values
    size = np.asarray(pc.binary_length(arr).to_numpy(zero_copy_only=False))
    short = np.flatnonzero((size >= 1) & (size <= 4))
    if len(short):
        words = pc.utf8_lower(arr.take(pa.array(short)))
        blank = short[
            np.asarray(
                pc.is_in(words, value_set=pa.array(sorted(_BLANKS))).to_numpy(zero_copy_only=False),
                dtype=bool,
            )
        ]
        if len(blank):
            mask = np.zeros(len(size), dtype=bool)
            mask[blank] = True
            arr = _replace(arr, mask, pa.array([""] * len(blank), pa.large_string()))
    return arr


def _text(s: pd.Series) -> pd.Series:
    """Text view: NFKC (full-width → ASCII, ideographic space → space), stripped, '' for missing."""
    return _from_arrow(_text_arrow(s), s.index)


def _extract(t: pd.Series, pattern: str) -> pd.DataFrame:
    """``str.extract`` with RE2 (pyarrow): every group named; NaN where no match or group empty."""
    import pyarrow.compute as pc

    res = pc.extract_regex(_arrow(t), pattern)
    names = [res.type.field(i).name for i in range(res.type.num_fields)]
    cols = {n: pc.struct_field(res, n).to_pandas() for n in names}
    out = pd.DataFrame(cols)
    out.index = t.index
    return out.replace("", np.nan)


def _problems(index: pd.Index) -> pd.Series:
    return pd.Series("", index=index, dtype=object)


# --------------------------------------------------------------------------- phones
_MOBILE = r"1[3-9][0-9]{9}"
_TWO_DIGIT_AREAS = ("010", "020", "021", "022", "023", "024", "025", "027", "028", "029")


def normalize_phone(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Canonical phone: mobile ``13812345678``, landline ``021-62345678``, hotline
    ``400-820-8820``, foreign E.164 ``+14155550123``; "" when blank or invalid.

    Handles +86/0086/86 prefixes, spaces, dashes, brackets, full-width digits, Excel
    floats (``13812345678.0``) and extensions (转/分机/ext). Letters are never keypad
    digits; masked and placeholder values and scientific notation are invalid. Empty
    cells are skipped when most are; plain mobiles are taken as they are.
    """
    return _with_dense(phone_codes, s)


def phone_codes(s: pd.Series) -> tuple[pd.Series, Codes]:
    """:func:`normalize_phone` with the problem codes sparse (rows, codes)."""
    return _on_given(_phone_codes, s)


def _normalize_phone(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """:func:`normalize_phone` on every cell."""
    return _with_dense(_phone_codes, s)


def _phone_codes(s: pd.Series) -> tuple[pd.Series, Codes]:
    """:func:`_phone_text_codes`, with the cells that are already plain mobiles (most, in
    a real export) taken as they are, before any text clean-up."""
    import pyarrow as pa

    if not (pd.api.types.is_string_dtype(s) and s.dtype != object):
        return _phone_text_codes(s)
    raw = _arrow(s)
    plain = _plain_mobiles(raw)
    if plain.any():  # a known dummy looks like a plain mobile: it takes the full rules
        plain &= ~_is_dummy(raw)
    if not plain.any():
        return _phone_text_codes(s)
    if plain.all():
        return _from_arrow(raw, s.index), _no_codes()
    other = ~plain
    at = np.flatnonzero(other)
    values, (hits, codes) = _phone_text_codes(
        _from_arrow(raw.filter(pa.array(other)), s.index[other])
    )
    return _from_arrow(_replace(raw, other, _arrow(values)), s.index), (at[hits], codes)


def _replace(base: Any, mask: np.ndarray, values: Any) -> Any:
    """``base`` (Arrow text) with the rows where ``mask`` is true replaced by ``values``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pc.replace_with_mask(base, pa.array(mask), values.cast(base.type))


def _phone_text_codes(s: pd.Series) -> tuple[pd.Series, Codes]:
    """:func:`normalize_phone` of cells that are not plain mobiles as written: text
    clean-up (full-width digits, spaces), then every phone rule."""
    values, found = _phone_written(_text_arrow(s), s.index)
    return _from_arrow(values, s.index), found


def _offsets_and_bytes(chunk: Any) -> tuple[np.ndarray, np.ndarray]:
    """The value offsets (``len(chunk) + 1`` of them, as int64) and the character bytes of
    one Arrow string array, read from its buffers without a copy."""
    import pyarrow as pa

    wide = pa.types.is_large_string(chunk.type) or pa.types.is_large_binary(chunk.type)
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64 if wide else np.int32)[
        chunk.offset : chunk.offset + len(chunk) + 1
    ]
    data = chunk.buffers()[2]
    return offsets.astype(np.int64, copy=False), np.frombuffer(
        data, dtype=np.uint8
    ) if data is not None else np.zeros(0, dtype=np.uint8)


def _plain_mobiles(arr: Any) -> np.ndarray:
    """Where a text array holds exactly a mainland mobile number: 11 ASCII digits, 1[3-9]…
    (lengths and the first two bytes read straight from the Arrow buffers)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = []
    for chunk in arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]:
        ok = np.asarray(
            pc.and_(pc.equal(pc.binary_length(chunk), 11), pc.ascii_is_decimal(chunk)).to_numpy(
                zero_copy_only=False
            ),
            dtype=bool,
        )
        if ok.any():
            offsets, data = _offsets_and_bytes(chunk)
            at = offsets[:-1][ok]
            ok[ok] = (
                (data[at] == ord("1")) & (data[at + 1] >= ord("3")) & (data[at + 1] <= ord("9"))
            )
        out.append(ok)
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def _phone_written(arr: Any, index: pd.Index) -> tuple[Any, Codes]:
    """Phones that are not plain mobiles: (canonical values as an Arrow array, codes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # fast path, whole column in pyarrow: blank, placeholder, or a mobile number written
    # with separators / a +86, 0086 or 86 prefix / an Excel float tail; the rest (the few
    # landlines, hotlines, foreign, masked, lettered values) takes the full path below
    arr = pc.replace_substring_regex(arr, r"^([0-9]+)\.0+$", r"\1")
    core = pc.replace_substring_regex(arr, _SEPARATORS, "")
    mobile = pc.match_substring_regex(core, _FAST_MOBILE)
    mobile = pc.and_(mobile, pa.array(~_is_dummy(pc.utf8_slice_codeunits(core, -11))))
    blank = pc.equal(arr, "")
    placeholder = pc.is_in(arr, value_set=pa.array(sorted(_PLACEHOLDERS)))
    fast = pc.or_(pc.or_(mobile, blank), placeholder).to_numpy(zero_copy_only=False)
    out_arr = pc.if_else(mobile, pc.utf8_slice_codeunits(core, -11), "")
    hits = np.flatnonzero(placeholder.to_numpy(zero_copy_only=False))
    codes = np.full(len(hits), "phone_placeholder", dtype=object)
    if not fast.all():
        slow = ~fast
        full, full_problems = _phone_full(_from_arrow(arr.filter(pa.array(slow)), index[slow]))
        out_arr = _replace(out_arr, slow, _arrow(full))
        found = full_problems.to_numpy(dtype=object)
        bad = np.flatnonzero(found != "")
        # placeholders take the fast path: the two sets of rows never meet
        hits = np.concatenate([hits, np.flatnonzero(slow)[bad]])
        codes = np.concatenate([codes, found[bad]])
        order = np.argsort(hits, kind="stable")
        hits, codes = hits[order], codes[order]
    return out_arr, (hits, codes)


_SEPARATORS = r"[ \t\-()./·—–_]"
# a mobile after separators are gone: what the full path reads as a plain mobile
_FAST_MOBILE = r"^(?:\+86|0086)?(?:86)?1[3-9][0-9]{9}$"


#: between two numbers in one cell (13812345678/13912345678, 、 ; ， ,)
_LIST_SEPARATORS = r"[/、;；，,|]"
#: an explicit extension at the end of a number: 转 123, 分机 123, ext. 123, x123
_EXTENSION = r"[ \t]*(?:转|分机|[Ee][Xx][Tt]\.?|[xX])[ \t]*([0-9]{1,6})$"


def _phone_full(t: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Every phone rule, on values already through :func:`_text` and the Excel-float fix:
    one number per cell, or the first valid one of a cell that lists several."""
    values, problems, _, _ = _phone_parts(t)
    return values, problems


def _phone_parts(t: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """:func:`_phone_full` with every valid number of the cell (``;``-joined, in the order
    written, each once) and the extension of the first: (phone, problems, phones, ext).

    A cell is read as one number first (``138/1234/5678`` is one); only when that fails and
    it holds a list separator is it read as several numbers."""
    values, problems = _phone_one(t)
    ext = _extension(t).where(values != "", "")
    phones = values.copy()
    several = ((values == "") & t.str.contains(_LIST_SEPARATORS, regex=True)).to_numpy(dtype=bool)
    if not several.any():
        return values, problems, phones, ext
    cells = np.flatnonzero(several)
    split = t.iloc[cells].str.split(_LIST_SEPARATORS, regex=True)
    owner = np.repeat(cells, split.str.len().to_numpy(dtype=np.int64))
    parts = pd.Series(
        np.concatenate(split.to_numpy()) if len(split) else [], dtype="str"
    ).str.strip()
    part_values, _ = _phone_one(parts)
    part_ext = _extension(parts)
    ok = (part_values != "").to_numpy(dtype=bool)
    if not ok.any():
        return values, problems, phones, ext
    found = pd.DataFrame(
        {
            "cell": owner[ok],
            "phone": part_values[ok].to_numpy(dtype=object),
            "ext": part_ext[ok].to_numpy(dtype=object),
        }
    )
    first = found.drop_duplicates("cell")
    listed = (
        found.drop_duplicates(["cell", "phone"]).groupby("cell", sort=False)["phone"].agg(";".join)
    )
    at = first["cell"].to_numpy()
    values.iloc[at] = first["phone"].to_numpy(dtype=object)
    ext.iloc[at] = first["ext"].to_numpy(dtype=object)
    problems.iloc[at] = ""
    phones.iloc[listed.index.to_numpy()] = listed.to_numpy(dtype=object)
    return values, problems, phones, ext


def _extension(t: pd.Series) -> pd.Series:
    """The digits of an explicit extension at the end of each value ("" when none)."""
    return t.str.extract(_EXTENSION, expand=False).fillna("").astype("str")


def _phone_one(t: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Every phone rule for a cell holding one number (text already through :func:`_text`)."""
    problems = _problems(t.index)
    out = pd.Series("", index=t.index, dtype="str")
    blank = t == ""
    # Excel float forms
    t = t.str.replace(r"^([0-9]+)\.0+$", r"\1", regex=True)
    sci = t.str.fullmatch(r"[0-9](\.[0-9]+)?[eE]\+?[0-9]+")
    placeholder = t.isin(_PLACEHOLDERS)
    masked = t.str.contains(r"[*×xX]{3,}|\*", regex=True)
    # drop extensions, then separators
    core = t.str.replace(_EXTENSION, "", regex=True)
    core = core.str.replace(r"[ \t\-()./·—–_]", "", regex=True)
    letters = core.str.contains(r"[A-Za-z]", regex=True) & ~masked
    foreign = core.str.startswith("+") & ~core.str.startswith("+86")
    cn = core.str.replace(r"^(\+86|0086)", "", regex=True)
    cn = cn.where(~cn.str.fullmatch(r"86" + _MOBILE), cn.str[2:])
    cn = cn.where(~cn.str.fullmatch(r"86[2-9][0-9]{8,10}"), "0" + cn.str[2:])  # 86 + landline w/o 0
    # a landline written as +86 21 6234 5678 lost its trunk 0
    had_cc = core.str.match(r"^(\+86|0086)")
    cn = cn.where(~(had_cc & cn.str.fullmatch(r"[2-9][0-9]{8,10}")), "0" + cn)
    mobile = cn.str.fullmatch(_MOBILE)
    hotline = cn.str.fullmatch(r"[48]00[0-9]{7}")
    landline = cn.str.fullmatch(r"0[0-9]{9,11}") & ~mobile
    two = cn.str.startswith(_TWO_DIGIT_AREAS)
    area = cn.str[:3].where(two, cn.str[:4])
    local = cn.str[3:].where(two, cn.str[4:])
    landline = landline & local.str.len().between(7, 8)
    # placeholder numbers: one digit repeated (00000000000, 0000-0000000), a subscriber
    # number of zeros (010-00000000, 400-0000000); the listed dummies are checked below
    same_digit = cn.str.fullmatch(r"[0-9]{5,}") & (cn.str[1:] == cn.str[:-1])
    zeros = (landline & local.str.fullmatch(r"0+")) | (hotline & cn.str[3:].str.fullmatch(r"0+"))
    dummy = same_digit | zeros | pd.Series(_is_dummy(_arrow(cn)), index=t.index)
    ok_mobile = mobile & ~sci & ~masked & ~letters & ~placeholder & ~dummy
    out[ok_mobile] = cn[ok_mobile]
    ok_land = landline & ~sci & ~masked & ~letters & ~placeholder & ~dummy
    if ok_land.any():  # the area code exists and the number's length fits it
        fits = ok_land.to_numpy(dtype=bool, copy=True)
        fits[fits] = _landline_fits(area[ok_land] + local[ok_land]).to_numpy(dtype=bool)
        ok_land = pd.Series(fits, index=t.index)
    out[ok_land] = area[ok_land] + "-" + local[ok_land]
    ok_hot = hotline & ~ok_mobile & ~ok_land & ~letters & ~dummy
    out[ok_hot] = cn[ok_hot].str[:3] + "-" + cn[ok_hot].str[3:6] + "-" + cn[ok_hot].str[6:]
    ok = ok_mobile | ok_land | ok_hot
    listed = ok & pd.Series(_is_dummy(_arrow(out)), index=t.index)
    if listed.any():
        out[listed] = ""
        ok &= ~listed
        dummy |= listed
    rest = foreign & ~ok & ~letters & ~masked & ~blank
    if rest.any():
        formatted = core[rest].map(_format_foreign)
        out[rest] = formatted
        ok = ok | (rest & (out != ""))
    bad = ~blank & ~ok
    problems[bad] = "phone_invalid"
    problems[bad & dummy] = "phone_dummy"
    problems[bad & letters] = "phone_letters"
    problems[bad & masked] = "phone_masked"
    problems[bad & placeholder] = "phone_placeholder"
    problems[bad & sci] = "excel_precision_lost"
    return out, problems


def _landline_fits(digits: pd.Series) -> pd.Series:
    """Whether mainland landlines (trunk 0 + area code + number, digits only) are valid
    fixed-line numbers in phonenumbers' metadata: the area code exists and the number's
    length fits it (``07558888888`` is not: Shenzhen numbers have 8 digits). Looked up
    once per distinct value."""
    codes, distinct = pd.factorize(digits)
    verdict = np.array([_landline_valid(str(d)) for d in distinct] + [False], dtype=bool)
    return pd.Series(verdict[np.where(codes < 0, len(distinct), codes)], index=digits.index)


@lru_cache(maxsize=65536)
def _landline_valid(digits: str) -> bool:
    import phonenumbers

    try:
        num = phonenumbers.parse(digits, "CN")
    except phonenumbers.NumberParseException:
        return False
    kinds = (
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )
    return phonenumbers.is_valid_number(num) and phonenumbers.number_type(num) in kinds


@lru_cache(maxsize=1)
def dummy_phones() -> frozenset[str]:
    """The well-known dummy numbers of ``rules/phones.yaml`` (as canonical phones)."""
    from custtool.config import load_yaml

    data = load_yaml(Path(__file__).parent / "rules" / "phones.yaml", what="phone rules", empty={})
    return frozenset(str(v).strip() for v in (data.get("dummies") or []) if str(v).strip())


def _is_dummy(arr: Any) -> np.ndarray:
    """Where an Arrow text array holds one of :func:`dummy_phones` (a hash lookup)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found = pc.is_in(arr, value_set=pa.array(sorted(dummy_phones()), pa.string()))
    return np.asarray(pc.fill_null(found, False).to_numpy(zero_copy_only=False), dtype=bool)


def phone_lists(s: pd.Series, values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Every valid number of each cell, ``;``-joined (``phones``), and the extension of the
    first (``phone_ext``), given the cells ``s`` and their :func:`normalize_phone` values.

    Only the cells that can list numbers or name an extension (not already their value, and
    holding a list separator or an extension word) are read again: the rest hold their one
    number and no extension."""
    import pyarrow as pa
    import pyarrow.compute as pc

    raw = pc.fill_null(
        _arrow(s if pd.api.types.is_string_dtype(s) and s.dtype != object else s.astype("str")), ""
    )
    got = _arrow(values)
    if isinstance(got, pa.ChunkedArray):
        got = got.combine_chunks()
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    got = got.cast(pa.large_string())
    differ = np.asarray(
        pc.not_equal(raw.cast(pa.large_string()), got).to_numpy(zero_copy_only=False), dtype=bool
    )
    empty = pa.repeat(pa.scalar("", pa.large_string()), len(s))
    at = np.flatnonzero(differ)
    if len(at):
        marks = pc.match_substring_regex(raw.take(pa.array(at)), r"[/、;；，,|转分机xXtT]")
        at = at[np.asarray(marks.to_numpy(zero_copy_only=False), dtype=bool)]
    if not len(at):
        return pd.Series(got, index=s.index, dtype="str"), pd.Series(
            empty, index=s.index, dtype="str"
        )
    text = _text(s.iloc[at]).str.replace(r"^([0-9]+)\.0+$", r"\1", regex=True)
    _, _, listed, extension = _phone_parts(text)
    mask = np.zeros(len(s), dtype=bool)
    mask[at] = True
    phones = _replace(got, mask, _arrow(listed))
    ext = _replace(empty, mask, _arrow(extension))
    return pd.Series(phones, index=s.index, dtype="str"), pd.Series(ext, index=s.index, dtype="str")


@lru_cache(maxsize=4096)
def _format_foreign(text: str) -> str:
    import phonenumbers

    try:
        num = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(num):
        return ""
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


# --------------------------------------------------------------------------- email
_EMAIL = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}"


def normalize_email(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Trim (ideographic space too), lower-case, plain syntax check; "" when invalid."""
    return _with_dense(email_codes, s)


def email_codes(s: pd.Series) -> tuple[pd.Series, Codes]:
    """:func:`normalize_email` with the problem codes sparse (rows, codes)."""
    return _on_given(_email_codes, s)


def _normalize_email(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """:func:`normalize_email` on every cell."""
    return _with_dense(_email_codes, s)


def _email_codes(s: pd.Series) -> tuple[pd.Series, Codes]:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _text_arrow(s)
    # the same steps as pandas' str methods on Arrow strings, on the whole column at once:
    # blanks out, spaces out, lower case, 。 → ., then the syntax check
    t = pc.utf8_lower(pc.replace_substring_regex(arr, r"[ \t]+", ""))
    t = pc.replace_substring(t, "。", ".")
    valid = pc.match_substring_regex(t, "^" + _EMAIL + "$")
    hits = np.flatnonzero(
        pc.and_(pc.not_equal(t, ""), pc.invert(valid)).to_numpy(zero_copy_only=False)
    )
    values = pc.if_else(valid, t, pa.scalar("", t.type))
    return _from_arrow(values, s.index), (hits, np.full(len(hits), "email_invalid", dtype=object))


# --------------------------------------------------------------------------- dates
_DATE_RE = (
    r"^(?P<y>[0-9]{4})[ \t]*[-/.年][ \t]*(?P<m>[0-9]{1,2})[ \t]*[-/.月][ \t]*(?P<d>[0-9]{1,2})[ \t]*日?"
    r"(?:[ \tT]+(?P<H>[0-9]{1,2})[ \t]*[:时][ \t]*(?P<M>[0-9]{1,2})(?:[ \t]*[:分][ \t]*(?P<S>[0-9]{1,2})(?:\.[0-9]+)?[ \t]*秒?)?)?"
    r"[ \t]*(?P<tz>Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
_COMPACT_RE = r"^(?P<y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})(?:(?:[ \t]+(?P<H1>[0-9]{1,2})|(?P<H2>[0-9]{2})):?(?P<M>[0-9]{2})(?::?(?P<S>[0-9]{2}))?)?$"
_EXCEL_EPOCH = pd.Timestamp("1899-12-30")


def normalize_date(
    s: pd.Series, *, keep_time: bool = False, tz: str = "Asia/Shanghai"
) -> tuple[pd.Series, pd.Series]:
    """Dates to ``datetime64`` (midnight unless ``keep_time``); NaT when blank or invalid.

    Year first always (2024/1/5, 2024年1月5日, 20240105, 2024-01-05 10:30); Excel serial
    numbers (also as 5-digit text); impossible dates (2023-02-29) are invalid, never shifted.
    A time with a UTC offset is converted to ``tz`` (the firm's zone) and made naive.
    """
    t = _text(s)
    problems = _problems(s.index)
    # the fixed-width forms (2024-01-05, 2024/01/05 10:30:00) read straight from the bytes;
    # the rest through the patterns
    fixed, found = _fixed_width_dates(_arrow(t))
    tzs: pd.Series | None = None
    if not fixed.all():
        rest = ~fixed
        pending = t[rest]
        parts = _extract(pending, _DATE_RE)
        compact = _extract(pending, _COMPACT_RE)
        compact["H"] = compact["H1"].fillna(compact["H2"])
        use_c = parts["y"].isna() & compact["y"].notna()
        for col in ("y", "m", "d", "H", "M", "S"):
            parts[col] = parts[col].where(~use_c, compact[col])
            found[col][rest] = pd.to_numeric(parts[col], errors="coerce").to_numpy(dtype="float64")
        if "tz" in parts:
            tzs = pd.Series(np.nan, index=s.index, dtype=object)
            tzs[rest] = parts["tz"].where(~use_c).to_numpy(dtype=object)
    nums = {k: pd.Series(v, index=s.index) for k, v in found.items()}
    frame = pd.DataFrame(
        {
            "year": nums["y"],
            "month": nums["m"],
            "day": nums["d"],
            "hour": nums["H"].fillna(0) if keep_time else 0,
            "minute": nums["M"].fillna(0) if keep_time else 0,
            "second": nums["S"].fillna(0) if keep_time else 0,
        },
        index=s.index,
    )
    valid_parts = (
        frame["year"].between(1900, 2100)
        & frame["month"].between(1, 12)
        & frame["day"].between(1, 31)
    )
    valid_parts &= (
        frame["hour"].between(0, 23)
        & frame["minute"].between(0, 59)
        & frame["second"].between(0, 59)
    )
    result = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    if valid_parts.any():
        sub = frame[valid_parts].astype("int64")
        # a day past the month's end must not roll over: check by round trip
        built = pd.to_datetime(sub, errors="coerce")
        same_day = built.dt.day == sub["day"]
        result[valid_parts] = built.where(same_day)
    # UTC offsets → firm time zone
    if keep_time and tzs is not None and tzs.notna().any():
        has = tzs.notna() & result.notna()
        if has.any():
            off = tzs[has].astype(str).str.replace(":", "", regex=False)
            off = off.where(off != "Z", "+0000")
            minutes = off.str[0].map({"+": 1, "-": -1}) * (
                off.str[1:3].astype(int) * 60 + off.str[3:5].astype(int)
            )
            utc = result[has] - pd.to_timedelta(minutes, unit="m")
            local = utc.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None)
            result[has] = local
    # Excel serial numbers
    serial = result.isna()
    if serial.any():
        serial[serial] = t[serial].str.fullmatch(r"[0-9]{5}(\.[0-9]+)?").to_numpy(dtype=bool)
    if serial.any():
        days = pd.to_numeric(t[serial], errors="coerce")
        days = days.where(days.between(10000, 80000))
        stamps = _EXCEL_EPOCH + pd.to_timedelta(days if keep_time else np.floor(days), unit="D")
        result[serial] = stamps.dt.round("s") if keep_time else stamps
    bad = (t != "") & result.isna()
    problems[bad] = "date_invalid"
    return result, problems


def _fixed_width_dates(arr: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Which values are ``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM:SS`` exactly (``/`` or ``-``
    between the date parts, a space or ``T`` before the time), and their parts as numbers
    (NaN elsewhere; no time: NaN hours, minutes, seconds), read from the Arrow bytes."""
    import pyarrow as pa

    n = len(arr)
    fixed = np.zeros(n, dtype=bool)
    nums = {k: np.full(n, np.nan) for k in ("y", "m", "d", "H", "M", "S")}
    start = 0
    for chunk in arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]:
        m = len(chunk)
        if m == 0 or chunk.buffers()[2] is None:
            start += m
            continue
        off, data = _offsets_and_bytes(chunk)
        size = np.diff(off)
        valid = (
            np.ones(m, dtype=bool)
            if chunk.null_count == 0
            else np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        )
        rows = np.flatnonzero(valid & ((size == 10) | (size == 19)))
        if len(rows):
            at = off[rows]
            y, ok_y = _digits(data, at, (0, 1, 2, 3))
            mo, ok_m = _digits(data, at, (5, 6))
            d, ok_d = _digits(data, at, (8, 9))
            sep = data[at + 4]
            ok = (
                ok_y & ok_m & ok_d & ((sep == ord("-")) | (sep == ord("/"))) & (data[at + 7] == sep)
            )
            timed = size[rows] == 19
            hh = mm = ss = np.zeros(len(at), dtype=np.int64)
            if timed.any():
                # bytes past a 10-byte value are never read into the result: clip the index
                at_t = np.minimum(at + 18, len(data) - 1) - 18
                hh, ok_h = _digits(data, at_t, (11, 12))
                mm, ok_mi = _digits(data, at_t, (14, 15))
                ss, ok_s = _digits(data, at_t, (17, 18))
                gap = data[at_t + 10]
                shape_ok = (
                    ((gap == ord(" ")) | (gap == ord("T")))
                    & (data[at_t + 13] == ord(":"))
                    & (data[at_t + 16] == ord(":"))
                )
                ok &= ~timed | (ok_h & ok_mi & ok_s & shape_ok)
            good = rows[ok]
            where = start + good
            fixed[where] = True
            nums["y"][where], nums["m"][where], nums["d"][where] = y[ok], mo[ok], d[ok]
            t_ok = timed[ok]
            for key, v in (("H", hh), ("M", mm), ("S", ss)):
                vals = np.where(t_ok, v[ok] if np.ndim(v) else v, np.nan)
                nums[key][where] = vals
        start += m
    return fixed, nums


def _digits(
    data: np.ndarray, at: np.ndarray, places: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The number written by the ASCII digits at byte offsets ``at + place``, and whether
    they are all digits."""
    value = np.zeros(len(at), dtype=np.int64)
    ok = np.ones(len(at), dtype=bool)
    for k in places:
        digit = data[at + k].astype(np.int64) - 48
        ok &= (digit >= 0) & (digit <= 9)
        value = value * 10 + digit
    return value, ok


# --------------------------------------------------------------------------- gender
_GENDER = {
    "男": "男",
    "m": "男",
    "male": "男",
    "男性": "男",
    "man": "男",
    "boy": "男",
    "男士": "男",
    "女": "女",
    "f": "女",
    "female": "女",
    "女性": "女",
    "woman": "女",
    "girl": "女",
    "女士": "女",
    "未知": "未知",
    "保密": "未知",
    "不详": "未知",
    "其他": "未知",
    "unknown": "未知",
    "u": "未知",
    "": "未知",
}


def normalize_gender(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """男/女/未知 from 男/M/male/男性, 女/F/female/女性, 未知/保密/blank (never from 先生/女士 in names)."""
    t = _text(s).str.lower()
    out = t.map(_GENDER)
    problems = _problems(s.index)
    problems[out.isna()] = "gender_unknown_value"
    return out.fillna("未知").astype("str"), problems


# --------------------------------------------------------------------------- amounts
#: amounts of :data:`custtool.engines.sql.MAX_AMOUNT` (1e12) or more are invalid; the SQL
#: twin's plain amounts have at most 12 digits before the point, all below it


def normalize_amount(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Numbers from ``¥12,500.00``, ``12500元``, ``1.25万``, ``(1,200)`` (negative); NaN when invalid."""
    t = _text(s)
    neg_paren = t.str.fullmatch(r"\(.*\)")
    core = t.str.replace(r"^\((.*)\)$", r"\1", regex=True)
    core = core.str.replace(r"[¥￥$, \t]|人民币|RMB|rmb|CNY|cny|元", "", regex=True)
    wan = core.str.endswith("万")
    yi = core.str.endswith("亿")
    core = core.str.replace(r"[万亿]$", "", regex=True)
    num = pd.to_numeric(
        core.where(core.str.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)"), None), errors="coerce"
    )
    num = num.where(~wan, num * 10_000).where(~yi, num * 100_000_000)
    num = num.where(~neg_paren, -num.abs())
    num = num.where(num.abs() < MAX_AMOUNT)  # 400 digits are inf; no order is 1e12 yuan
    num = num.round(2)
    problems = _problems(s.index)
    problems[(t != "") & num.isna()] = "amount_invalid"
    return num.astype("float64"), problems


def normalize_number(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Plain numbers (quantities, scores) from text; NaN when invalid."""
    t = _text(s).str.replace(",", "", regex=False)
    num = pd.to_numeric(
        t.where(t.str.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)"), None), errors="coerce"
    ).astype("float64")
    num = num.where(num.abs() < float("inf"))  # 400 digits read as inf
    problems = _problems(s.index)
    problems[(t != "") & num.isna()] = "number_invalid"
    return num, problems


_TRUE = {
    "是",
    "y",
    "yes",
    "true",
    "1",
    "已退款",
    "退款",
    "退货",
    "已退货",
    "refund",
    "refunded",
    "退款成功",
}
_FALSE = {
    "否",
    "n",
    "no",
    "false",
    "0",
    "",
    "正常",
    "未退款",
    "无",
    "已完成",
    "完成",
    "交易成功",
    "已支付",
}


def normalize_bool(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Yes/no flags (是/否, Y/N, 已退款, …) to bool; unrecognised → False with a flag."""
    t = _text(s).str.lower()
    out = pd.Series(False, index=s.index, dtype=bool)
    out[t.isin(_TRUE)] = True
    problems = _problems(s.index)
    problems[~t.isin(_TRUE | _FALSE)] = "bool_invalid"
    return out, problems


# --------------------------------------------------------------------------- names
_HONORIFIC = "[\u4e00-\u9fff]{1,2}(先生|女士|小姐|老师|太太|总|经理|老板|阿姨|叔叔|同学)"


def normalize_name(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Whitespace removed inside Chinese names (张 伟 → 张伟), collapsed in Latin names;
    an honorific-only name (张先生) is kept as written and flagged ``name_honorific``."""
    t = _text(s)
    cjk = t.str.contains("[\u4e00-\u9fff]", regex=True) & ~t.str.contains(r"[A-Za-z]", regex=True)
    out = t.where(~cjk, t.str.replace(r"[ \t]+", "", regex=True))
    out = out.where(cjk, out.str.replace(r"[ \t]+", " ", regex=True))
    problems = _problems(s.index)
    problems[out.str.fullmatch(_HONORIFIC)] = "name_honorific"
    return out.astype("str"), problems


# --------------------------------------------------------------------------- cities
@lru_cache(maxsize=1)
def _city_table() -> tuple[dict[str, tuple[str, str]], dict[str, str], str, str]:
    """(alias → (city, province)), (province alias → region), city regex, province regex.

    The alias table also has the derived maps ``_city_name``/``_city_province`` cached.
    """
    import yaml

    path = Path(__file__).parent / "rules" / "cities.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    city_alias: dict[str, tuple[str, str]] = {}
    prov_region: dict[str, str] = {}
    for region, provinces in data["regions"].items():
        for province, cities in provinces.items():
            short = _short_province(province)
            for alias in {province, short}:
                prov_region[alias] = region
            if province in data.get("municipalities", []):
                city_alias[province] = (province, province)
                city_alias[short] = (province, province)
            for city in cities or []:
                full = city if city.endswith(("市", "自治州", "盟", "地区")) else city + "市"
                base = re.sub(r"(市|地区|盟)$", "", full)
                for alias in {full, base}:
                    city_alias.setdefault(alias, (full, province))
    for alias, target in (data.get("aliases") or {}).items():
        if target in city_alias:
            city_alias[alias.lower()] = city_alias[target]
    names = sorted(city_alias, key=len, reverse=True)
    provs = sorted(prov_region, key=len, reverse=True)
    return city_alias, prov_region, "|".join(map(re.escape, names)), "|".join(map(re.escape, provs))


@lru_cache(maxsize=1)
def _city_maps() -> tuple[dict[str, str], dict[str, str], list[str]]:
    city_alias = _city_table()[0]
    return (
        {a: v[0] for a, v in city_alias.items()},
        {a: v[1] for a, v in city_alias.items()},
        [a for a, v in city_alias.items() if v[0] == v[1]],
    )


def _short_province(name: str) -> str:
    for suffix in ("维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "特别行政区", "省", "市"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def normalize_city(s: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Standard city name (北京市, 深圳市) and region (华北/华东/华南/华中/西南/西北/东北).

    Accepts 北京, 北京市朝阳区, 广东省深圳市南山区, Shenzhen. Returns (city, region, problems);
    an unrecognised city is kept as written with an empty region. The city of
    :func:`normalize_address`.
    """
    _, city, _, region, problems = normalize_address(s)
    return city.where(city != "", _text(s)).astype("str"), region, problems


#: a district, county or county-level city written after the city (南山区, 浦东新区, 昆山市)
_DISTRICT = r"^(?P<d>[\x{4e00}-\x{9fff}]{1,7}?(?:新区|区|县|旗|市))"


@lru_cache(maxsize=1)
def _district_cities() -> dict[str, str]:
    """District → its city, for the districts ``rules/cities.yaml`` lists under exactly one
    city (朝阳区 is in 北京市 and 长春市: not listed here)."""
    import yaml

    data = yaml.safe_load(
        (Path(__file__).parent / "rules" / "cities.yaml").read_text(encoding="utf-8")
    )
    seen: dict[str, set[str]] = {}
    for city, names in (data.get("districts") or {}).items():
        for name in names or []:
            seen.setdefault(str(name), set()).add(str(city))
    return {d: next(iter(c)) for d, c in seen.items() if len(c) == 1}


def normalize_address(s: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series, pd.Series]:
    """Province, city, district and region of addresses (the address itself is not changed).

    ``广东省深圳市南山区科技园`` gives (广东省, 深圳市, 南山区, 华南); ``北京市朝阳区`` gives
    (北京市, 北京市, 朝阳区, 华北). The city is found after an optional province (a table of
    rules/cities.yaml), the district is the first 区/县/市/旗 name after the city; a text
    starting with a district that rules/cities.yaml lists under one city finds that city.
    Returns (province, city, district, region, problems); "" where a part is not found.
    """
    city_alias, prov_region, city_re, prov_re = _city_table()
    city_name, city_province, munis = _city_maps()
    t = _text(s)
    prov = _extract(t, f"^(?P<p>{prov_re})")["p"]
    rest = t.str.replace(f"^({prov_re})", "", regex=True).str.lstrip("省").str.strip()
    found = _extract(rest, f"^(?P<c>{city_re})")["c"]
    lowered = t.str.lower()
    found = found.where(found.notna(), lowered.where(lowered.isin(city_alias.keys())))
    muni = prov.isin(munis)
    # after the city (or, in a municipality, after the province) comes the district
    after = rest.where(muni, rest.str.replace(f"^({city_re})", "", regex=True)).str.strip()
    # a city's short name followed by 区/县 is a district's name (朝阳区 is not 朝阳市)
    named = found.notna() & ~muni & after.str.match(r"^[区县旗]")
    if named.any():
        found = found.where(~named)
        after = after.where(~named, rest)
    district = _extract(after, _DISTRICT)["d"]
    city = found.map(city_name)
    province = found.map(city_province)
    province = province.where(province.notna(), prov)
    city = city.where(~muni, prov.map(city_name))
    province = province.where(~muni, city)
    # no city written: a district listed under one city names it (南山区 → 深圳市)
    by_district = _district_cities()
    lone = city.isna() & district.notna()
    if lone.any() and by_district:
        known = district[lone].map(by_district)
        city[lone] = known
        province[lone] = known.map(city_province)
    # a province's full name: 广东 → 广东省
    full_province = {a: p for a, (c, p) in city_alias.items() if a == c} | {
        _short_province(p): p for p in {v[1] for v in city_alias.values()}
    }
    province = province.map(full_province).where(province.isin(full_province.keys()), province)
    region = province.map(prov_region)
    out = [
        x.astype(object).where(x.notna(), "").astype("str")
        for x in (province, city, district, region)
    ]
    return out[0], out[1], out[2], out[3], _problems(s.index)


def on_uniques(fn: Any, s: pd.Series, **kw: Any) -> tuple[pd.Series, ...]:
    """Run a normaliser on the distinct values of ``s`` only, then spread the results.

    Cities, dates, genders and amounts repeat a lot: 1,000,000 rows often hold a few
    thousand distinct values, so this is the same result for a fraction of the work.
    """
    *values, (hits, codes) = on_uniques_codes(fn, s, **kw)
    return (*values, pd.Series(_dense(len(s), (hits, codes)), index=s.index, dtype=object))


_LOOK = 20_000


def on_uniques_codes(fn: Any, s: pd.Series, **kw: Any) -> tuple[Any, ...]:
    """:func:`on_uniques` with the problem codes (``fn``'s last result) sparse: the values,
    then (rows, codes)."""
    # a column of distinct values (order timestamps) goes through whole: its first rows
    # all differing tells, before the cost of finding every distinct value
    head = s.iloc[:_LOOK]
    mostly_distinct = len(s) > 4 * _LOOK and len(pd.unique(head)) > 0.95 * len(head)
    at, uniques = (None, None) if mostly_distinct else pd.factorize(s, use_na_sentinel=True)
    if at is None or uniques is None or len(uniques) > len(s) // 2:
        *values, problems = fn(s, **kw)
        found = problems.to_numpy(dtype=object)
        hits = code_rows(found)
        return (*values, (hits, found[hits]))
    # Arrow text stays Arrow text (the normalisers work on it without a conversion)
    dtype = uniques.dtype if isinstance(uniques.dtype, pd.StringDtype) else object
    uniq = pd.Series(uniques, dtype=dtype)
    *results, problems = fn(
        pd.concat([uniq, pd.Series([""], dtype=dtype)], ignore_index=True), **kw
    )
    take = np.where(at < 0, len(uniques), at)
    out = []
    for r in results:
        spread = r.take(take)
        spread.index = s.index
        out.append(spread)
    found = problems.to_numpy(dtype=object)
    bad = code_rows(found)
    if not len(bad):
        return (*out, _no_codes())
    hits = np.flatnonzero(np.isin(take, bad))
    return (*out, (hits, found[take[hits]]))


def join_problems(*codes: Any, index: pd.Index | None = None) -> pd.Series:
    """Join several problem-code Series (or object arrays, given ``index``) into one
    ``;``-separated Series (empty parts dropped)."""
    series = [c for c in codes if c is not None]
    if not series:
        raise ValueError("no problem series")
    if index is None:
        index = series[0].index
    elif not all(isinstance(c, pd.Series) for c in series):
        series = [
            c if isinstance(c, pd.Series) else pd.Series(c, index=index, dtype=object, copy=False)
            for c in series
        ]
    out = _codes_array(series[0]).copy()
    if pd.isna(out[out != ""]).any():
        return _join_problems_slow(series)
    for c in series[1:]:
        arr = _codes_array(c)
        has = arr != ""
        if not has.any():
            continue
        if pd.isna(arr[has]).any():  # a missing code: what astype(str) and + gave before
            return _join_problems_slow(series)
        had = out != ""
        both = has & had
        out[both] = out[both] + ";" + arr[both]
        only = has & ~had
        out[only] = arr[only]
    return pd.Series(out, index=index, dtype=object)


def _codes_array(c: Any) -> np.ndarray:
    """Problem codes as a numpy object array."""
    if isinstance(c, pd.Series) and c.dtype == object:
        return c.to_numpy(dtype=object)
    return np.asarray(pd.Series(c).astype(str).to_numpy(dtype=object), dtype=object)


def _join_problems_slow(series: list[Any]) -> pd.Series:
    out = series[0].astype(str)
    for c in series[1:]:
        c = c.astype(str)
        out = np.where(out == "", c, np.where(c == "", out, out + ";" + c))
        out = pd.Series(out, index=series[0].index)
    return pd.Series(out, index=series[0].index, dtype=object)


# --------------------------------------------------------------------------- ID numbers, cards
_GB11643_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_GB11643_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)


def _digit_matrix(t: pd.Series, width: int) -> np.ndarray:
    """The ``width`` characters of each value (all of that length) as a uint8 matrix."""
    raw = "".join(t.tolist()).encode("ascii")
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(t), width)


def id_number_valid(s: pd.Series) -> pd.Series:
    """True where a 身份证号 is valid: 18 characters with the GB 11643-1999 check digit
    (ISO 7064 MOD 11-2) and a real birth date, or an old 15-digit number with a real birth
    date. Blank is not valid (callers flag only non-blank values)."""
    t = _text(s).str.strip().str.upper()
    ok = pd.Series(False, index=s.index)
    long = t.str.fullmatch(r"\d{17}[\dX]").fillna(False).to_numpy(dtype=bool)
    if long.any():
        m = _digit_matrix(t[long], 18)
        total = ((m[:, :17] - 48).astype(np.int64) * _GB11643_WEIGHTS).sum(axis=1)
        check = _GB11643_CHECK[total % 11] == m[:, 17]
        born = pd.to_datetime(t[long].str[6:14], format="%Y%m%d", errors="coerce")
        ok[long] = check & born.notna().to_numpy()
    short = t.str.fullmatch(r"\d{15}").fillna(False).to_numpy(dtype=bool)
    if short.any():
        born = pd.to_datetime("19" + t[short].str[6:12], format="%Y%m%d", errors="coerce")
        ok[short] = born.notna().to_numpy()
    return ok


def bank_card_valid(s: pd.Series) -> pd.Series:
    """True where a 银行卡号 is 12-19 digits (spaces and dashes ignored) passing the Luhn check."""
    t = _text(s).str.replace(r"[\s-]", "", regex=True)
    ok = pd.Series(False, index=s.index)
    digits = t.str.fullmatch(r"\d{12,19}").fillna(False).to_numpy(dtype=bool)
    if digits.any():
        d = t[digits]
        width = 19
        padded = d.str.zfill(width)  # leading zeros change no Luhn sum
        m = (_digit_matrix(padded, width) - 48).astype(np.int64)
        # from the right: every second digit doubled (positions 1, 3, … counted from 0)
        doubled = np.zeros(width, dtype=bool)
        doubled[width - 2 :: -2] = True
        v = np.where(doubled, m * 2, m)
        v = np.where(v > 9, v - 9, v)
        ok[digits] = v.sum(axis=1) % 10 == 0
    return ok
