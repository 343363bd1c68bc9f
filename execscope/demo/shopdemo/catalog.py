PRICES = {"apple": 0.5, "bread": 2.25, "cheese": 7.8, "coffee": 11.0, "olive oil": 9.4}


def unit_price(item):
    return PRICES[item]


def line_total(item, quantity):
    price = unit_price(item)
    if quantity >= 10:
        price = round(price * 0.9, 2)  # bulk price
    return round(price * quantity, 2)
