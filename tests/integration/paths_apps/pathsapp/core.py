"""Small functions whose paths depend on their inputs (the path-prediction fixture). Mutants of this
module flip one comparison each (tests/integration/test_paths.py, tests/benchmarks/bench_paths.py)."""


def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def grade(score):
    if score >= 90:
        return "A"
    elif score >= 80:
        return "B"
    elif score >= 70:
        return "C"
    return "F"


def count_positive(xs):
    n = 0
    for x in xs:
        if x > 0:
            n += 1
    return n


def bisect_left(xs, target):
    lo, hi = 0, len(xs)
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


def insertion_sort(xs):
    xs = list(xs)
    for i in range(1, len(xs)):
        j = i
        while j > 0 and xs[j - 1] > xs[j]:
            xs[j - 1], xs[j] = xs[j], xs[j - 1]
            j -= 1
    return xs


def gcd(a, b):
    while b != 0:
        a, b = b, a % b
    return a


def tokenize(text):
    tokens = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isdigit():
            j = i
            while j < len(text) and text[j].isdigit():
                j += 1
            tokens.append(int(text[i:j]))
            i = j
        elif c in "+-*":
            tokens.append(c)
            i += 1
        else:
            i += 1
    return tokens


def calc(text):
    tokens = tokenize(text)
    total = 0
    term = 1
    sign = 1
    op = "+"
    for t in tokens:
        if t == "*":
            op = "*"
        elif t == "+" or t == "-":
            total += sign * term
            sign = 1 if t == "+" else -1
            op = "+"
        elif op == "*":
            term *= t
        else:
            term = t
    return total + sign * term


def safe_div(a, b):
    if b == 0:
        return None
    return a / b


def parse_age(text):
    if not text.isdigit():
        return -1
    age = int(text)
    if age > 150:
        return -1
    return age


def normalize(xs):
    if len(xs) == 0:
        return []
    top = max(xs)
    if top <= 0:
        return [0.0] * len(xs)
    return [x / top for x in xs]


def first_success(attempts, limit=3):
    n = 0
    while n < limit:
        n += 1
        if attempts[n - 1]:
            return n
    return -1
