"""A realistic jobsplit entry: Monte Carlo volumes of unit balls over a parameter grid.

Each job estimates the volume of the unit ball in `dimension` dimensions by sampling points
in the cube [-1, 1]^d, for one `replicate` of the experiment. Replicates of the same
dimension draw different streams (each job's `random_obj` is seeded by its own id), so their
spread is an honest error estimate. Run it with `make demo`, or see the README.
"""

import math

import jobsplit


def job(dimension, replicate, random_obj, config, progress):
    samples = config.getint("montecarlo", "samples")
    report_every = config.getint("montecarlo", "report_every")
    uniform = random_obj.uniform
    inside = 0
    for done in range(1, samples + 1):
        if sum(uniform(-1.0, 1.0) ** 2 for _ in range(dimension)) <= 1.0:
            inside += 1
        if done % report_every == 0:
            progress.report(done, base=samples)
    fraction = inside / samples
    cube = 2.0**dimension
    exact = math.pi ** (dimension / 2) / math.gamma(dimension / 2 + 1)
    std_error = cube * math.sqrt(fraction * (1 - fraction) / samples)
    # One value per result column of header.csv, in order.
    return cube * fraction, exact, std_error, samples


def cost(dimension, replicate):
    """Estimated relative cost of a job (optional: used by the `cost` strategy and `plan`)."""
    return dimension


def summarize(rows):
    """Fold the merged results (`python example_main.py reduce OUT/ -o summary.csv`): the mean
    estimate per dimension next to the exact volume."""
    by_dimension = {}
    for row in rows:
        dimension = row["args"][0]
        by_dimension.setdefault(dimension, []).append(row)
    return [
        {
            "dimension": dimension,
            "replicates": len(group),
            "mean estimate": sum(r["Volume Estimate"] for r in group) / len(group),
            "exact": group[0]["Exact Volume"],
        }
        for dimension, group in sorted(by_dimension.items())
    ]


pool = [(dimension, replicate) for dimension in range(2, 9) for replicate in range(8)]

if __name__ == "__main__":
    jobsplit.main(job, pool, cost=cost, reduce=summarize)
