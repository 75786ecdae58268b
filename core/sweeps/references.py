"""The published points a sweep is drawn beside and `reproduce` is checked against."""

# METHOD §8: the authors' stored results for gemma-2-2b-it with Gemma Scope 16k, thr 0.01;
# METHOD §10: DSG's headline on the same model ("dsg": True), known questions.
REFERENCE_POINTS = {
    "gemma-2-2b-it-L3": [
        {"n": 10, "c": 50, "wmdp": 0.584, "mmlu": 0.963, "loss_added": -0.0035},
        {"n": 20, "c": 50, "wmdp": 0.475, "mmlu": 0.923, "loss_added": 0.021},
        {"n": None, "c": None, "wmdp": 0.441, "mmlu": 1.000, "loss_added": 0.011, "rmu": True},
        {"n": None, "c": None, "wmdp": 0.296, "mmlu": 0.993, "loss_added": None, "dsg": True},
    ],
    "gemma-2-2b-it-L7": [
        {"n": 10, "c": 50, "wmdp": 0.787, "mmlu": 0.997, "loss_added": -0.007},
        {"n": 20, "c": 100, "wmdp": 0.421, "mmlu": 0.957, "loss_added": 0.019},
    ],
}

# METHOD §8: the authors' top-10 features at layer 7, threshold 0.01, BOS counted
PAPER_TOP_FEATURES = {
    "gemma-2-2b-it-L7": (12799, 5453, 15661, 1354, 4216, 1017, 3828, 15939, 15901, 8122),
}
