"""Bar counting: Fourier power of units at the bar period, then ablating the top units (part 6).

python -m experiments.analyze_bars --workdir=runs/tiny --output=runs/tiny/analysis
"""

from experiments import analyze_common

if __name__ == "__main__":
    analyze_common.main_for("bars")
