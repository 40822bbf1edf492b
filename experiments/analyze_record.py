"""Record every internal signal (gates, cells, hidden states, softmax) over a generated tune: npz + PNG.

python -m experiments.analyze_record --workdir=runs/tiny --output=runs/tiny/analysis
"""

from experiments import analyze_common

if __name__ == "__main__":
    analyze_common.main_for("record")
