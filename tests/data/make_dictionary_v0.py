"""Write tests/data/dictionary_v0.pkl with the code of commit fe5dd87 (kept to show
how the pickle was made; rerunning it with later code would defeat its purpose)."""
import pickle
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits

from sklearn_replearn import DictionaryLearner


def main():
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    dl = DictionaryLearner(n_components=12, alpha=0.3, max_iter=2, tol=None,
                           batch_size=64,
                           random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dl.fit(X[:200], y[:200])
    dl.partial_fit(X[200:300], y[200:300])  # so that Adam's moments are saved too
    with open("tests/data/dictionary_v0.pkl", "wb") as f:
        pickle.dump(dl, f)
    inputs = X[300:320]
    codes = dl.transform(inputs)
    cont = pickle.loads(pickle.dumps(dl)).partial_fit(X[320:420], y[320:420])
    np.savez("tests/data/dictionary_v0_expected.npz", X=inputs, codes=codes,
             X_next=X[320:420], y_next=y[320:420],
             components_after_partial_fit=cont.components_,
             loss_after=np.array(cont.loss_curve_))


if __name__ == "__main__":  # pytest's doctest collection imports this file
    main()
