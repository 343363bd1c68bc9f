"""A mutated shared list: summary() hands the caller's list to normalise(), which rewrites it in place,
so average() later sees fractions where it expects percentages."""


def normalise(values):
    for i, value in enumerate(values):
        values[i] = value / 100
    return values


def summary(scores):
    shown = normalise(scores)
    return f"{len(shown)} scores"


def average(scores):
    return sum(scores) / len(scores)


def main():
    scores = [80, 90, 70]
    print(summary(scores))
    mean = average(scores)
    if mean < 1:
        raise ValueError(f"mean {mean:.2f} is not a percentage")
    return mean


if __name__ == "__main__":
    main()
