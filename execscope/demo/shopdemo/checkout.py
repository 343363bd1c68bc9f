from shopdemo.pricing import price_order


class CheckoutError(Exception):
    pass


def charge(customer, amount):
    if amount < 1.0:
        raise CheckoutError(f"refusing to charge {customer['name']} {amount:.2f}: below the minimum")
    return {"customer": customer["name"], "charged": amount}


def checkout(order):
    amount = price_order(order)
    return charge(order["customer"], amount)
