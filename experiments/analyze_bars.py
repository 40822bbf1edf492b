"""Bar counting: Fourier power of units at the bar period, then ablating the top units (part 6).

python -m experiments.analyze_bars --workdir=runs/tiny --output=runs/tiny/analysis
python -m experiments.analyze_bars --num_tunes=16 --layer=2      # the shipped model, its second layer
python -m experiments.analyze_bars --tunes=data/folk_corpus.txt --indices=1,2,3 --layer=1

The tunes default to the first 8 (of at most --max_length tokens) of the run's training data;
the layer to the one with the most bar-period power. The figure's caption and the printed line
name model, step, n and layer.
"""

from experiments import analyze_common

if __name__ == "__main__":
    analyze_common.main_for("bars")
