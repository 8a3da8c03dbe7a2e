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
    "city": ("城市", "City"),
    "region": ("区域", "Region"),
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
    "customer_share": ("客户占比(%)", "Share of customers (%)"),
    "revenue": ("营收", "Revenue"),
    "revenue_share": ("营收占比(%)", "Share of revenue (%)"),
    "avg_recency": ("平均最近消费间隔(天)", "Average recency (days)"),
    "avg_frequency": ("平均消费频次", "Average frequency"),
    "avg_monetary": ("平均消费金额", "Average monetary"),
    "nps": ("NPS", "NPS"),
    "tags": ("标签", "Tags"),
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
