"""A small shop: prices orders, applies coupons and loyalty discounts, checks out. It has a bug."""
