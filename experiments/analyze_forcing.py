"""Two-hot input forcing (0.7 token + 0.3 random pitch) and logit nudging (parts 2, 7).

python -m experiments.analyze_forcing --workdir=runs/tiny --output=runs/tiny/analysis
python -m experiments.analyze_forcing --num_tunes=16 --seed=1 --prefix="M:6/8 K:Cmaj"
python -m experiments.analyze_forcing --tunes=data/folk_corpus.txt --indices=1,2,3,4

Each setting draws --num_tunes tunes (default 4) after --prefix, or after the opening bar of
each chosen tune of a --tunes file. The two-hot input enters the first layer.
"""

from experiments import analyze_common

if __name__ == "__main__":
    analyze_common.main_for("forcing")
