"""Two-hot input forcing (0.7 token + 0.3 random pitch) and logit nudging (parts 2, 7).

python -m experiments.analyze_forcing --workdir=runs/tiny --output=runs/tiny/analysis
"""

from experiments import analyze_common

if __name__ == "__main__":
    analyze_common.main_for("forcing")
