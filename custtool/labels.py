"""Display labels: canonical English column names inside, Chinese or English at the edge.

This is the one table reports and CLI output take their labels from. Add a column's
label here when a module introduces the column; unknown columns show as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

# canonical column -> (中文, English)
COLUMN_LABELS: dict[str, tuple[str, str]] = {
    # customers
    "customer_id": ("客户编号", "Customer ID"),
    "source_customer_id": ("来源客户编号", "Source customer ID"),
    "name": ("姓名", "Name"),
    "phone": ("手机号", "Phone"),
    "email": ("邮箱", "Email"),
    "gender": ("性别", "Gender"),
    "age": ("年龄", "Age"),
    "birth_date": ("出生日期", "Birth date"),
    "id_number": ("身份证号", "ID number"),
    "bank_card": ("银行卡号", "Bank card"),
    "city": ("城市", "City"),
    "region": ("区域", "Region"),
    "province": ("省份", "Province"),
    "district": ("区县", "District"),
    "address": ("地址", "Address"),
    "phone_ext": ("分机号", "Extension"),
    "industry": ("行业", "Industry"),
    "position": ("职位", "Position"),
    "customer_type": ("客户类型", "Customer type"),
    "company": ("公司", "Company"),
    "company_size": ("企业规模", "Company size"),
    "first_contact_date": ("首次接触时间", "First contact"),
    "source_channel": ("来源渠道", "Source channel"),
    "owner": ("负责人", "Owner"),
    "status": ("客户状态", "Status"),
    "needs": ("需求", "Needs"),
    "notes": ("备注", "Notes"),
    "member_level": ("会员等级", "Member level"),
    # orders
    "order_id": ("订单号", "Order ID"),
    "order_time": ("下单时间", "Order time"),
    "amount": ("金额", "Amount"),
    "channel": ("渠道", "Channel"),
    "category": ("品类", "Category"),
    "product": ("商品", "Product"),
    "quantity": ("数量", "Quantity"),
    "refund": ("退款", "Refund"),
    "pay_method": ("支付方式", "Payment method"),
    # interactions
    "record_id": ("记录编号", "Record ID"),
    "time": ("时间", "Time"),
    "method": ("方式", "Method"),
    "content": ("内容", "Content"),
    "result": ("结果", "Result"),
    "next_follow_up": ("下次跟进", "Next follow-up"),
    "staff": ("跟进人", "Staff"),
    # surveys
    "score": ("推荐评分", "Score (0-10)"),
    "satisfaction": ("满意度", "Satisfaction"),
    "comments": ("评价", "Comments"),
    # provenance
    "_source_file": ("来源文件", "Source file"),
    "_sheet": ("工作表", "Sheet"),
    "_row": ("行号", "Row"),
    "_channel": ("导入渠道", "Import channel"),
    "_flags": ("数据问题", "Data issues"),
    # clean
    "channels": ("渠道", "Channels"),
    "source_ids": ("来源编号", "Source IDs"),
    "phones": ("全部手机号", "All phones"),
    "emails": ("全部邮箱", "All emails"),
    "follow_up_flag": ("待跟进", "Needs follow-up"),
    "missing_fields": ("缺失字段", "Missing fields"),
    "match_key": ("合并依据", "Matched on"),
    "exact_duplicate": ("完全重复", "Exact duplicate"),
    # clean report
    "metric": ("指标代码", "Metric"),
    "metric_label": ("指标", "Item"),
    "metric_value": ("数量", "Count"),
    "merge_key": ("合并键", "Merge key"),
    "key_value": ("键值", "Key value"),
    "linked_rows": ("合并行数", "Rows linked"),
    "linked_customers": ("涉及客户数", "Customers"),
    "n_names": ("不同姓名数", "Distinct names"),
    "conflict_field": ("冲突字段", "Field"),
    "kept_value": ("保留值", "Kept value"),
    "all_values": ("全部取值", "All values"),
    "n_values": ("取值个数", "Values"),
    "customer_id_a": ("客户编号A", "Customer ID A"),
    "name_a": ("姓名A", "Name A"),
    "customer_id_b": ("客户编号B", "Customer ID B"),
    "name_b": ("姓名B", "Name B"),
    "fuzzy_block": ("比对分组", "Block"),
    "similarity": ("相似度", "Similarity"),
    "example_stage": ("合并前后", "Stage"),
    "id_change": ("编号变更", "Id change"),
    "previous_ids": ("上期编号", "Previous ids"),
    # metrics / segments
    "first_order": ("首次消费", "First order"),
    "last_order": ("最近消费", "Last order"),
    "recency": ("最近消费间隔(天)", "Recency (days)"),
    "frequency": ("消费频次", "Frequency"),
    "monetary": ("消费金额", "Monetary"),
    "aov": ("客单价", "Average order value"),
    "orders_30d": ("近30天订单", "Orders 30d"),
    "orders_90d": ("近90天订单", "Orders 90d"),
    "orders_365d": ("近365天订单", "Orders 365d"),
    "monetary_30d": ("近30天消费", "Spend 30d"),
    "monetary_90d": ("近90天消费", "Spend 90d"),
    "monetary_365d": ("近365天消费", "Spend 365d"),
    "monetary_prev": ("上期消费", "Spend previous window"),
    "growth": ("消费增长率", "Spend growth"),
    "repurchase": ("复购", "Repurchase"),
    "days_since_last_interaction": ("距上次互动(天)", "Days since last interaction"),
    "days_since_interaction": ("距上次互动(天)", "Days since last interaction"),
    "complaints": ("投诉次数", "Complaints"),
    "level": ("客户等级", "Customer level"),
    "contact_stage": ("互动状态", "Contact stage"),
    "events_365d": ("近365天参加活动", "Events 365d"),
    "preferred_contact": ("偏好联系方式", "Preferred contact"),
    "deal_stage": ("成交阶段", "Deal stage"),
    "top_category": ("常购品类", "Top category"),
    "preferred_channel": ("常用渠道", "Preferred channel"),
    "channel_mode": ("偏好消费渠道", "Channel mode"),
    "active_slot": ("活跃时段", "Active slot"),
    "last_purchase_date": ("最近消费时间", "Last purchase date"),
    "order_count": ("累计消费次数", "Order count"),
    "total_spend": ("累计消费金额", "Total spend"),
    "r_score": ("R得分", "R score"),
    "f_score": ("F得分", "F score"),
    "m_score": ("M得分", "M score"),
    "rfm_score": ("RFM总分", "RFM score"),
    "rfm_class": ("RFM分类", "RFM class"),
    "tier": ("价值等级", "Value tier"),
    "lifecycle": ("生命周期", "Lifecycle"),
    "potential": ("潜力客户", "Potential"),
    "historical_value": ("历史价值", "Historical value"),
    "p_alive": ("存活概率", "P(alive)"),
    "predicted_purchases": ("预测购买次数", "Predicted purchases"),
    "predicted_aov": ("预测客单价", "Predicted AOV"),
    "predicted_value": ("预测价值", "Predicted value"),
    "ltv": ("生命周期价值", "LTV"),
    "churn_risk": ("流失风险", "Churn risk"),
    "nps_score": ("NPS评分", "NPS score"),
    "last_interaction": ("最近互动", "Last interaction"),
    "interactions_30d": ("近30天互动", "Interactions 30d"),
    "interactions_365d": ("近365天互动", "Interactions 365d"),
    "complaints_365d": ("近365天投诉", "Complaints 365d"),
    "bg_x": ("重复购买天数", "Repeat purchase days (x)"),
    "bg_t_x": ("首末购买间隔(天)", "First to last purchase (days)"),
    "bg_T": ("首购至统计日(天)", "First purchase to as-of (days)"),
    "bg_repeat_avg": ("复购平均金额", "Average repeat purchase value"),
    # segment summary
    "dimension": ("维度", "Dimension"),
    "segment": ("分群", "Segment"),
    "customers": ("客户数", "Customers"),
    "avg_recency": ("平均最近消费间隔(天)", "Average recency (days)"),
    "avg_frequency": ("平均消费频次", "Average frequency"),
    "avg_monetary": ("平均消费金额", "Average monetary"),
    "nps": ("NPS", "NPS"),
    "tags": ("标签", "Tags"),
    "manual_tags": ("手工标签", "Manual tags"),
    "as_of": ("统计日期", "As of"),
    # rejects
    "file": ("文件", "File"),
    "sheet": ("工作表", "Sheet"),
    "row": ("行号", "Row"),
    "column": ("列", "Column"),
    "value": ("原始值", "Value"),
    "code": ("问题代码", "Code"),
    "reason_zh": ("原因", "Reason (zh)"),
    "reason_en": ("原因(英文)", "Reason"),
}


def label(column: str, lang: str = "zh") -> str:
    """The display label of a canonical column (the column itself when unknown)."""
    pair = COLUMN_LABELS.get(column)
    if pair is None:
        return column
    return pair[0] if lang == "zh" else pair[1]


def labels(columns: Iterable[str], lang: str = "zh") -> list[str]:
    return [label(c, lang) for c in columns]


# follow-up tasks (custtool.followups.due_followups)
COLUMN_LABELS.update(
    {
        "due_date": ("到期日", "Due date"),
        "state": ("状态", "State"),
        "days_overdue": ("逾期天数", "Days overdue"),
        "rule": ("规则", "Rule"),
        "action": ("建议动作", "Action"),
        "last_contact": ("最近跟进", "Last contact"),
        "last_method": ("最近跟进方式", "Last method"),
    }
)
FOLLOWUP_SOURCE_LABEL = ("来源", "Source")


# --------------------------------------------------------------------------- report (issue 6)
COLUMN_LABELS.update(
    {
        # strategy table (rules/strategies.yaml)
        "dimension": ("维度", "Dimension"),
        "segment": ("分群", "Segment"),
        "strategy_goal": ("目标", "Goal"),
        "strategy_measures": ("措施", "Measures"),
        "strategy_channel": ("渠道", "Channel"),
        "strategy_frequency": ("频率", "Frequency"),
        "strategy_owner": ("负责人", "Owner"),
        "strategy_cycle": ("周期", "Cycle"),
        "suggested_action": ("建议措施", "Suggested action"),
        # segment tables / pivots
        "customers": ("客户数", "Customers"),
        "customer_share": ("客户占比", "Share of customers"),
        "revenue": ("消费金额", "Revenue"),
        "revenue_share": ("金额占比", "Share of revenue"),
        "orders": ("订单数", "Orders"),
        "month": ("月份", "Month"),
        "count": ("数量", "Count"),
        "share": ("占比", "Share"),
        "kpi": ("指标", "Indicator"),
        "kpi_value": ("数值", "Value"),
        "note": ("说明", "Meaning"),
        "before": ("上期分类", "Before"),
        "now": ("本期分类", "Now"),
        "lifecycle_now": ("本期生命周期", "Lifecycle now"),
        # cards
        "basic_info": ("基础信息", "Basic information"),
        "behaviour": ("行为特征", "Behaviour"),
        "preferences": ("需求偏好", "Needs and preferences"),
        "value_assessment": ("价值评估", "Value"),
        "top_cities": ("主要城市", "Top cities"),
        "age_bands": ("年龄段", "Age bands"),
        "top_channels": ("主要渠道", "Top channels"),
        "top_categories": ("偏好品类", "Top categories"),
        "typical_aov": ("典型客单价", "Typical order value"),
        "top_tags": ("显著标签", "Over-represented tags"),
        "gender_split": ("性别构成", "Gender split"),
        # funnel
        "group": ("分组", "Group"),
        "stage": ("阶段", "Stage"),
        "conversion": ("转化率(较上一阶段)", "Conversion from the stage before"),
        "overall": ("占比(全部客户)", "Share of the group"),
        "funnel_stage": ("漏斗阶段", "Funnel stage"),
        "lost": ("流失", "Lost"),
        "all": ("全部", "All"),
        "channel_modes": ("偏好消费渠道", "Channel modes"),
        "active_slots": ("活跃时段", "Active slots"),
        "common_needs": ("共同需求", "Common needs"),
        "levels": ("客户等级", "Customer levels"),
        "lift": ("提升度", "Lift"),
        "share_in_segment": ("群内占比", "Share in segment"),
        "share_overall": ("总体占比", "Share overall"),
        "tag": ("标签", "Tag"),
        "trait": ("特征", "Trait"),
        "segment_mean": ("本群均值", "Segment mean"),
        "overall_mean": ("全体均值", "All customers"),
    }
)

#: segment values and report texts: canonical (Chinese) value -> (中文, English)
VALUE_LABELS: dict[str, tuple[str, str]] = {
    "重要价值客户": ("重要价值客户", "Champions (important value)"),
    "重要发展客户": ("重要发展客户", "Important to develop"),
    "重要保持客户": ("重要保持客户", "Important to retain"),
    "重要挽留客户": ("重要挽留客户", "Important to win back"),
    "一般价值客户": ("一般价值客户", "General value"),
    "一般发展客户": ("一般发展客户", "General to develop"),
    "一般保持客户": ("一般保持客户", "General to retain"),
    "一般挽留客户": ("一般挽留客户", "General to win back"),
    "高价值": ("高价值", "High value"),
    "中价值": ("中价值", "Medium value"),
    "低价值": ("低价值", "Low value"),
    "潜在": ("潜在", "Prospect"),
    "新客户": ("新客户", "New"),
    "成长": ("成长", "Growing"),
    "成熟": ("成熟", "Mature"),
    "沉睡": ("沉睡", "Dormant"),
    "流失": ("流失", "Lost"),
}

#: sheet names, KPI names and other report texts: key -> (中文, English)
TEXT_LABELS: dict[str, tuple[str, str]] = {
    "sheet_summary": ("概览", "Summary"),
    "sheet_detail": ("客户明细", "Customers"),
    "sheet_strategy": ("策略", "Strategies"),
    "sheet_quality": ("数据质量", "Data quality"),
    "sheet_migration": ("迁移", "Migration"),
    "sheet_funnel": ("销售漏斗", "Sales funnel"),
    "sheet_tasks": ("跟进任务", "Follow-up tasks"),
    "sheet_trend": ("趋势", "Trend"),
    "trend_title": (
        "各期指标（客户台账 custtool.duckdb）",
        "KPIs per run (customer book custtool.duckdb)",
    ),
    "kpi_satisfaction": ("满意度", "Satisfaction"),
    "migration_tier": (
        "价值层级迁移（行：上期，列：本期）",
        "Tier migration (rows: before, columns: now)",
    ),
    "migration_lifecycle": (
        "生命周期迁移（行：上期，列：本期）",
        "Lifecycle migration (rows: before, columns: now)",
    ),
    "sheet_cards": ("个体画像", "Customer cards"),
    "sheet_group_cards": ("群体画像", "Segment cards"),
    "sheet_pivot": ("透视", "Pivot"),
    "report_title": ("客户分析报告", "Customer report"),
    "as_of": ("统计日期", "As of"),
    "role": ("角色", "Role"),
    "masked": ("个人信息已脱敏", "Personal data masked"),
    "unmasked": (
        "个人信息未脱敏（--no-mask；身份证号、银行卡号仍脱敏）",
        "Personal data NOT masked (--no-mask; ID numbers and bank cards still masked)",
    ),
    "kpi_customers": ("客户数", "Customers"),
    "kpi_active": ("活跃客户", "Active customers"),
    "kpi_revenue": ("消费总额", "Revenue"),
    "kpi_aov": ("平均客单价", "Average order value"),
    "kpi_repurchase": ("复购率", "Repurchase rate"),
    "kpi_nps": ("NPS", "NPS"),
    "nps_definition": (
        "NPS = 推荐者(9–10分)占比 − 贬损者(0–6分)占比，按截至统计日的全部有效问卷回复计算（不是每位客户的最新评分）",
        "NPS = % promoters (9–10) − % detractors (0–6) over all valid survey responses up to the as-of date (not each customer's latest score)",
    ),
    "by_rfm": ("按RFM分类", "By RFM class"),
    "by_tier": ("按价值等级", "By value tier"),
    "by_lifecycle": ("生命周期漏斗", "Lifecycle funnel"),
    "by_channel": ("渠道分布", "Channels"),
    "by_industry": ("行业分布", "Industries"),
    "by_city": ("城市分布", "Cities"),
    "monthly_revenue": ("月度消费额", "Monthly revenue"),
    "no_orders": ("（无订单）", "(no orders)"),
    "blank": ("（空）", "(blank)"),
    "total": ("合计", "Total"),
    "pivot_repeated": (
        "「{}」一位客户可有多个值：每个值各计一次（重复计入），各列/行之和可大于合计；合计行/列每位客户只计一次",
        "{} has several values per customer: a customer counts once per value (repeated), so cells can add up to more than the totals; the totals count each customer once",
    ),
    "pivot_repeats": ("（多值重复计入）", " (repeated values)"),
    "pivot_by_order": (
        "渠道按订单归属：每笔订单计入其自身渠道（统计期内的净额），各渠道之和等于合计",
        "Channel by order: each order counts in its own channel (net amounts in the window); the channels add up to the total",
    ),
    "yes": ("是", "Yes"),
    "no": ("否", "No"),
    "migration_matrix": (
        "分类迁移矩阵（行：上期，列：本期）",
        "Class migration (rows: before, columns: now)",
    ),
    "fallen": ("从重要价值客户降为重要挽留客户/流失", "Fell from champions to win-back / lost"),
    "new_customer": ("（新增）", "(new)"),
    "gone_customer": ("（已不在）", "(gone)"),
    "rejects": ("被拒绝的行", "Rejected rows"),
    "reject_codes": ("问题代码统计", "Rejects by code"),
    "flag_counts": ("数据问题标记统计", "Data issue flags"),
    "missing_counts": ("缺失字段统计", "Missing fields"),
    "clean_report": ("清洗报告", "Clean report"),
    "none": ("无", "None"),
    # tier / class sheets capped by report.sheet_rows (issue 12)
    "segment_all": (
        "全部 {n:,} 位客户，按价值从高到低",
        "All {n:,} customers, most valuable first",
    ),
    "segment_capped": (
        "按价值列出前 {listed:,} 位客户，另有 {more:,} 位未列出：完整名单见「{detail}」表"
        "（按「{dim}」筛选「{value}」）或报告旁的 {file}",
        "The top {listed:,} customers by value; {more:,} more are not listed: the full list is "
        "on the {detail} sheet (filter {dim} = {value}) and in {file} beside this workbook",
    ),
    "segment_summary": ("分群概况", "Segment summary"),
    "segment_traits": ("分群特征（均值）", "Traits (means)"),
    "segment_top": ("价值最高的 {n:,} 位客户", "Top {n:,} customers by value"),
    "detail_over_limit": (
        "共 {n:,} 位客户，超过 Excel 每表 {room:,} 行的上限：「客户明细」只含价值最高的 {room:,} 位，"
        "完整名单见报告旁的 {file}",
        "{n:,} customers exceed Excel's {room:,} rows a sheet: the Customers sheet holds the "
        "{room:,} most valuable; the full list is in {file} beside this workbook",
    ),
    "capped_sheet": (
        "本表列出前 {listed:,} 行，另有 {more:,} 行未列出：完整数据见 {file}",
        "This sheet lists the first {listed:,} rows; {more:,} more are not listed: the full data is in {file}",
    ),
}


def value_label(value: str, lang: str = "zh") -> str:
    """Display form of a segment value (the value itself when unknown or zh)."""
    pair = VALUE_LABELS.get(value)
    if pair is None or lang == "zh":
        return value
    return pair[1]


def text(key: str, lang: str = "zh") -> str:
    """A report text (sheet name, KPI name) in the language asked for."""
    pair = TEXT_LABELS[key]
    return pair[0] if lang == "zh" else pair[1]
