"""Generate the example exports in this folder, deterministically.

    python examples/make_examples.py

Three customer lists as a Chinese firm exports them (an e-commerce platform xlsx with
a merged title row and a notes sheet, a GBK CSV from the store POS, a UTF-8-BOM CSV of
WeChat official-account leads), the order details of both sales channels, a follow-up
log and a satisfaction survey. About a third of the people appear in more than one
channel (same phone or email); the files carry the usual mess: Excel floats for phones,
+86 and dashes, full-width digits, masked and letter-typed phones, several date styles,
honorific-only names, blank and totals rows, refunds and duplicate order lines.
"""

from __future__ import annotations

import csv
import random
from datetime import date, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261123
AS_OF = date(2026, 10, 31)

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
) + ["欧阳", "司马", "上官"]
GIVEN = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉林建国文斌宇浩凯晨欣怡佳琪子涵梓轩雨婷思远嘉诚俊豪心悦"
)
CITIES = [
    "北京市朝阳区",
    "上海市浦东新区",
    "广州",
    "深圳市南山区",
    "杭州市",
    "成都",
    "武汉市",
    "南京",
    "西安市",
    "重庆",
    "苏州市",
    "天津",
    "长沙市",
    "郑州",
    "青岛市",
    "沈阳",
    "厦门",
    "昆明市",
    "合肥",
    "济南市",
    "广东省佛山市",
    "浙江宁波",
    "Shenzhen",
]
INDUSTRIES = ["互联网", "制造业", "教育", "金融", "零售", "医疗", "咨询服务", "房地产", ""]
POSITIONS = [
    "产品经理",
    "工程师",
    "教师",
    "财务",
    "销售经理",
    "设计师",
    "学生",
    "自由职业",
    "总监",
    "",
]
CATEGORIES = {
    "家居": (80, 1500),
    "数码": (200, 6000),
    "服饰": (60, 900),
    "美妆": (50, 800),
    "食品": (20, 300),
    "母婴": (60, 1200),
}
OWNERS = ["王五", "赵六", "钱七", "孙八"]
NEEDS = [
    "关注环保材质",
    "希望提供产品使用指南",
    "有产品定制需求",
    "关注智能功能",
    "价格敏感,等促销",
    "需要企业采购发票",
    "希望配送更快",
    "",
]


def person(rng: random.Random, i: int) -> dict:
    surname = rng.choice(SURNAMES)
    given = "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2, 2])))
    gender = rng.choice(["男", "女"])
    birth = date(1965, 1, 1) + timedelta(days=rng.randrange(0, 365 * 40))
    phone = f"1{rng.choice('3456789')}{rng.randrange(0, 10**9):09d}"
    email = (
        f"user{i:04d}@{rng.choice(['qq.com', '163.com', 'example.com', 'foxmail.com'])}"
        if rng.random() < 0.6
        else ""
    )
    return {
        "i": i,
        "name": surname + given,
        "surname": surname,
        "gender": gender,
        "birth": birth,
        "phone": phone,
        "email": email,
        "city": rng.choice(CITIES),
        "industry": rng.choice(INDUSTRIES),
        "position": rng.choice(POSITIONS),
        "first": AS_OF - timedelta(days=rng.randrange(30, 900)),
        "owner": rng.choice(OWNERS),
        "needs": rng.choice(NEEDS),
    }


def messy_phone(rng: random.Random, phone: str, numeric_ok: bool) -> object:
    r = rng.random()
    if numeric_ok and r < 0.45:
        return float(phone) if r < 0.2 else int(phone)  # Excel number cells
    if r < 0.55:
        return f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}"
    if r < 0.62:
        return f"{phone[:3]} {phone[3:7]} {phone[7:]}"
    if r < 0.67:
        return phone.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    if r < 0.70:
        return "86" + phone
    return phone


def date_text(rng: random.Random, d: date) -> str:
    style = rng.random()
    if style < 0.4:
        return d.isoformat()
    if style < 0.6:
        return f"{d.year}/{d.month}/{d.day}"
    if style < 0.8:
        return f"{d.year}年{d.month}月{d.day}日"
    return d.strftime("%Y%m%d")


def main() -> None:
    rng = random.Random(SEED)
    people = [person(rng, i) for i in range(1, 341)]
    # channel membership: ~1/3 in two or three channels
    shop, store, wechat = [], [], []
    for p in people:
        r = rng.random()
        if r < 0.40:
            shop.append(p)
        elif r < 0.68:
            store.append(p)
        elif r < 0.80:
            wechat.append(p)
        elif r < 0.88:
            shop.append(p)
            store.append(p)
        elif r < 0.94:
            shop.append(p)
            wechat.append(p)
        else:
            shop.append(p)
            store.append(p)
            wechat.append(p)
    for idx, p in enumerate(shop):
        p["shop_id"] = f"TB{100000 + idx * 7}"
    for idx, p in enumerate(store):
        p["card"] = f"M{8800 + idx:05d}"
    write_shop(rng, shop)
    write_store(rng, store)
    write_wechat(rng, wechat)
    write_orders(rng, shop, store, people)
    write_followups(rng, people)
    write_survey(rng, people)
    print(f"people {len(people)}: shop {len(shop)}, store {len(store)}, wechat {len(wechat)}")


def write_shop(rng: random.Random, shop: list[dict]) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "会员列表"
    ws["A1"] = "天猫旗舰店 会员数据导出(导出时间:2026-11-01 09:12)"
    ws.merge_cells("A1:J1")
    ws.append([])
    ws.append(
        [
            "买家ID",
            "买家姓名",
            "手机号码",
            "邮箱",
            "性别",
            "所在城市",
            "注册时间",
            "会员等级",
            "职业",
            "备注",
        ]
    )
    for k, p in enumerate(shop):
        if k and k % 60 == 0:
            ws.append([])  # a blank line the platform leaves between pages
        name = p["name"] if rng.random() > 0.05 else p["surname"] + rng.choice(["先生", "女士"])
        phone = messy_phone(rng, p["phone"], numeric_ok=True)
        if k % 97 == 5:
            phone = p["phone"][:3] + "****" + p["phone"][7:]  # masked by the platform
        email = p["email"].upper() if p["email"] and rng.random() < 0.2 else p["email"]
        reg = datetime.combine(p["first"], datetime.min.time()) + timedelta(
            hours=rng.randrange(8, 22)
        )
        ws.append(
            [
                p["shop_id"],
                name,
                phone,
                email,
                rng.choice([p["gender"], p["gender"], "M" if p["gender"] == "男" else "F"]),
                p["city"],
                reg,
                rng.choice(["普通会员", "银卡", "金卡", "钻石"]),
                p["position"],
                "",
            ]
        )
    # a few that cannot be customers: no usable phone, no email
    ws.append(
        [
            "TB999001",
            "测试账号",
            "1381234abcd",
            "",
            "未知",
            "",
            "2025-01-01",
            "普通会员",
            "",
            "平台测试号",
        ]
    )
    ws.append(
        ["TB999002", "匿名买家", "", "not-an-email", "", "上海", "2025-02-01", "普通会员", "", ""]
    )
    ws.append(
        [
            "TB999003",
            '=HYPERLINK("http://x","点我")',
            "",
            "",
            "男",
            "北京",
            "2025-03-01",
            "普通会员",
            "",
            "+1 注入测试",
        ]
    )
    notes = wb.create_sheet("说明")
    notes["A1"] = "本表由平台自动导出,仅供内部使用。"
    notes["A2"] = "手机号已按平台规则部分脱敏。"
    wb.save(HERE / "电商平台会员.xlsx")


def write_store(rng: random.Random, store: list[dict]) -> None:
    rows = [
        ["会员卡号", "姓名", "联系电话", "性别", "生日", "城市", "开卡日期", "导购", "会员积分"]
    ]
    for k, p in enumerate(store):
        phone = messy_phone(rng, p["phone"], numeric_ok=False)
        name = p["name"][0] + " " + p["name"][1:] if rng.random() < 0.1 else p["name"]
        birth = date_text(rng, p["birth"]) if rng.random() < 0.8 else ""
        rows.append(
            [
                p["card"],
                name,
                phone,
                rng.choice(["男", "女", "男性", "女性", "保密"])
                if rng.random() < 0.2
                else p["gender"],
                birth,
                p["city"].replace("市", ""),
                date_text(rng, p["first"]),
                p["owner"],
                str(rng.randrange(0, 5000)),
            ]
        )
        if k == 40:
            rows.append(
                [
                    "M09001",
                    "刘 丽",
                    "(021) 6234-5678",
                    "女",
                    "1988-02-30",
                    "上海",
                    "2024/3/1",
                    "王五",
                    "0",
                ]
            )  # landline, impossible birthday
        if k == 80:
            rows.append([""] * 9)
    rows.append(
        ["M09002", "暂无", "无", "", "", "", "2024-05-05", "赵六", ""]
    )  # no contact: rejected
    rows.append(
        [
            "合计",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            str(sum(int(r[8] or 0) for r in rows[1:] if r[8].isdigit())),
        ]
    )
    with open(HERE / "门店会员.csv", "w", encoding="gbk", newline="") as f:
        csv.writer(f).writerows(rows)


def write_wechat(rng: random.Random, wechat: list[dict]) -> None:
    rows = [["昵称", "手机号", "邮箱", "城市", "关注时间", "咨询需求", "所属行业", "来源"]]
    for p in wechat:
        phone = p["phone"] if rng.random() < 0.85 else ""
        email = p["email"] or (f"wx{p['i']}@163.com" if not phone else "")
        if email and rng.random() < 0.3:
            email = "\u3000" + email + " "
        name = (
            p["name"]
            if rng.random() > 0.15
            else p["surname"] + rng.choice(["先生", "女士", "老师"])
        )
        rows.append(
            [
                name,
                phone,
                email,
                p["city"],
                date_text(rng, p["first"]) + f" {rng.randrange(8, 23)}:{rng.randrange(0, 60):02d}",
                p["needs"],
                p["industry"],
                rng.choice(["公众号菜单", "推文留资", "直播间", "朋友推荐"]),
            ]
        )
    with open(HERE / "公众号线索.csv", "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)


def write_orders(
    rng: random.Random, shop: list[dict], store: list[dict], people: list[dict]
) -> None:
    rows = [
        [
            "订单号",
            "渠道",
            "客户ID",
            "手机号",
            "下单时间",
            "品类",
            "商品名称",
            "数量",
            "实付金额",
            "订单状态",
        ]
    ]
    n = 0
    buyers = [(p, "电商") for p in shop] + [(p, "门店") for p in store]
    for p, channel in buyers:
        activity = rng.random()
        if activity < 0.15:
            continue  # never bought
        count = 1 + int(rng.expovariate(0.35)) if activity > 0.3 else 1
        # most buyers are active lately, some drifted away a year or more ago
        last_day = (
            min(int(rng.expovariate(1 / 90)), 700)
            if rng.random() < 0.8
            else rng.randrange(200, 700)
        )
        for _ in range(min(count, 25)):
            n += 1
            day = AS_OF - timedelta(days=min(last_day + int(rng.expovariate(1 / 120)), 760))
            when = datetime.combine(day, datetime.min.time()) + timedelta(
                minutes=rng.randrange(9 * 60, 22 * 60)
            )
            cat = rng.choice(list(CATEGORIES))
            lo, hi = CATEGORIES[cat]
            qty = rng.choice([1, 1, 1, 2, 3])
            amount = round(rng.uniform(lo, hi) * qty, 2)
            key = p["shop_id"] if channel == "电商" else p["card"]
            phone = ""
            if channel == "门店" and rng.random() < 0.2:
                key, phone = "", p["phone"]  # walk-in sale recorded by phone only
            amount_text = rng.choice([f"{amount:.2f}", f"¥{amount:,.2f}", f"{amount}元"])
            order_id = f"{'TB' if channel == '电商' else 'POS'}{202400000 + n}"
            row = [
                order_id,
                channel,
                key,
                phone,
                when.strftime("%Y-%m-%d %H:%M:%S") if rng.random() < 0.8 else date_text(rng, day),
                cat,
                f"{cat}商品{rng.randrange(1, 30)}",
                str(qty),
                amount_text,
                "交易成功",
            ]
            rows.append(row)
            if rng.random() < 0.03:  # refunded a few days later: a refund line on the same order id
                back = min(day + timedelta(days=rng.randrange(1, 8)), AS_OF)
                rows.append(
                    [
                        order_id,
                        channel,
                        key,
                        phone,
                        back.isoformat() + " 10:00:00",
                        cat,
                        row[6],
                        str(qty),
                        f"{amount:.2f}",
                        "已退款",
                    ]
                )
            if rng.random() < 0.01:
                rows.append(list(row))  # the same order line exported twice
    rows.append(
        [
            "POS299999999",
            "门店",
            "M99999",
            "",
            "2026-10-30 15:00:00",
            "食品",
            "礼盒",
            "1",
            "188",
            "交易成功",
        ]
    )  # unknown member
    rows.append(
        ["POS299999998", "门店", "M08801", "", "", "食品", "礼盒", "1", "88", "交易成功"]
    )  # no time: rejected
    rows.append(["合计", "", "", "", "", "", "", "", "", ""])
    with open(HERE / "订单明细.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


def write_followups(rng: random.Random, people: list[dict]) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "跟进记录"
    ws.append(
        [
            "记录编号",
            "手机号",
            "客户姓名",
            "跟进时间",
            "跟进方式",
            "跟进内容",
            "跟进结果",
            "下次跟进时间",
            "跟进人",
        ]
    )
    k = 0
    for p in rng.sample(people, 160):
        for _ in range(rng.choice([1, 1, 2, 3])):
            k += 1
            when = datetime.combine(
                AS_OF - timedelta(days=rng.randrange(0, 300)), datetime.min.time()
            ) + timedelta(hours=rng.randrange(9, 19))
            method = rng.choice(
                ["电话", "电话", "拜访", "邮件", "线上会议", "咨询", "投诉", "活动"]
            )
            result = rng.choice(["有意向", "需跟进", "暂无意向", "报价单已发送", "合同签订"])
            content = {
                "投诉": "物流慢,投诉处理中",
                "咨询": "咨询产品定制",
                "活动": "参加会员日活动",
            }.get(method, "介绍新品与优惠")
            nxt = (
                when.date() + timedelta(days=rng.choice([7, 14, 30]))
                if result in ("有意向", "需跟进", "报价单已发送")
                else None
            )
            ws.append(
                [
                    f"F{k:05d}",
                    int(p["phone"]),
                    p["name"],
                    when,
                    method,
                    content,
                    result,
                    nxt,
                    p["owner"],
                ]
            )
    wb.save(HERE / "跟进记录.xlsx")


def write_survey(rng: random.Random, people: list[dict]) -> None:
    rows = [["手机号", "填写时间", "推荐意愿(0-10)", "满意度", "意见建议"]]
    for p in rng.sample(people, 150):
        score = rng.choices(range(11), weights=[1, 1, 1, 2, 2, 3, 4, 8, 12, 10, 8])[0]
        rows.append(
            [
                p["phone"],
                date_text(rng, AS_OF - timedelta(days=rng.randrange(0, 200))),
                str(score),
                str(rng.randint(1, 5)),
                rng.choice(["", "配送很快", "客服耐心", "价格偏高", "包装破损"]),
            ]
        )
    rows.append([people[0]["phone"], "2026-09-01", "11", "5", "打分超出范围"])
    rows.append([people[1]["phone"], "2026-09-02", "", "4", "未打分"])
    with open(HERE / "满意度调查.csv", "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)


if __name__ == "__main__":
    main()
