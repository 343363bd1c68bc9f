"""A wrong value passed through two calls: tax_rate returns 20 (a percentage) where the rest of the
code expects a fraction (0.20); price_line hands it to add_tax, and check refuses the total."""

TAX_TABLE = {"food": "7", "books": "7", "default": "20"}


def tax_rate(category, token="tok-live-9f8e7d6c"):  # a secret in the source: never sent to a model
    percent = TAX_TABLE.get(category, TAX_TABLE["default"])
    return int(percent)


def add_tax(amount, rate):
    tax = amount * rate
    return amount + tax


def price_line(amount, rate):
    return add_tax(amount, rate)


def check(total):
    if total > 100:
        raise ValueError(f"total {total} is over the card limit")
    return total


def main():
    rate = tax_rate("toys")
    total = price_line(12.5, rate)
    return check(total)


if __name__ == "__main__":
    main()
