"""Run: python -m shopdemo. Processes a day of orders; some fail."""

from shopdemo.checkout import CheckoutError, checkout

ORDERS = [
    {"id": 1, "customer": {"name": "ana", "years": 1}, "lines": [("apple", 4), ("bread", 1)]},
    {"id": 2, "customer": {"name": "ben", "vip": True, "years": 2}, "lines": [("coffee", 2)], "coupon": "SAVE10"},
    {"id": 3, "customer": {"name": "cho", "years": 7}, "lines": [("cheese", 1), ("apple", 12)]},
    {"id": 4, "customer": {"name": "dev", "vip": True, "years": 9}, "lines": [("bread", 1)], "coupon": "HALF"},
    {"id": 5, "customer": {"name": "eli"}, "lines": [("olive oil", 3)], "coupon": "NOPE"},
]


def main():
    receipts, failures = [], []
    for order in ORDERS:
        try:
            receipts.append(checkout(order))
        except CheckoutError as exc:
            failures.append((order["id"], str(exc)))
    for receipt in receipts:
        print(f"charged {receipt['customer']:>4}: {receipt['charged']:7.2f}")
    for order_id, reason in failures:
        print(f"order {order_id} failed: {reason}")
    return len(failures)


if __name__ == "__main__":
    raise SystemExit(1 if main() else 0)
