from shopdemo.catalog import line_total

COUPONS = {"SAVE10": 0.10, "HALF": 0.50}


def subtotal(lines):
    total = 0.0
    for item, quantity in lines:
        total += line_total(item, quantity)
    return round(total, 2)


def apply_coupon(total, coupon):
    rate = COUPONS.get(coupon, 0.0)
    return round(total * (1 - rate), 2)


def apply_loyalty(total, customer):
    discount = 0.0
    if customer.get("vip"):
        discount = 0.15
    if customer.get("years", 0) > 5:
        discount += 0.40
    if discount:
        total = total - total * discount
    if customer.get("vip") and discount:
        total = total - total * discount
    return round(total, 2)


def price_order(order):
    total = subtotal(order["lines"])
    total = apply_coupon(total, order.get("coupon"))
    total = apply_loyalty(total, order["customer"])
    return total
