"""Write the small intersphinx inventories this site links to.

The build must work offline (CI may have no network), so ``conf.py`` gives
intersphinx these files instead of the projects' own ``objects.inv``. Each
entry is a name the pages or docstrings reference, with its address on the
project's site. When ``sphinx -n`` reports an external target as not found,
add it here and run ``python docs/_inventories/make_inventories.py``.
"""

import os
import zlib

# project -> [(name, "domain:role", path on the project's site, shown title)];
# a title of "-" shows the name itself.
ENTRIES = {
    "python": [
        ("int", "py:class", "library/functions.html#int", "-"),
        ("float", "py:class", "library/functions.html#float", "-"),
        ("str", "py:class", "library/stdtypes.html#str", "-"),
        ("bool", "py:class", "library/functions.html#bool", "-"),
        ("dict", "py:class", "library/stdtypes.html#dict", "-"),
        ("list", "py:class", "library/stdtypes.html#list", "-"),
        ("tuple", "py:class", "library/stdtypes.html#tuple", "-"),
        ("object", "py:class", "library/functions.html#object", "-"),
        ("callable", "py:function", "library/functions.html#callable", "-"),
        ("None", "py:data", "library/constants.html#None", "-"),
        ("True", "py:data", "library/constants.html#True", "-"),
        ("False", "py:data", "library/constants.html#False", "-"),
        ("bltin-boolean-values", "std:label",
         "library/stdtypes.html#boolean-type-bool", "Boolean Values"),
        ("sequence", "std:term", "glossary.html#term-sequence", "-"),
        ("iterable", "std:term", "glossary.html#term-iterable", "-"),
        ("path-like object", "std:term", "glossary.html#term-path-like-object",
         "-"),
    ],
    "numpy": [
        ("numpy", "py:module", "reference/index.html#module-numpy", "-"),
        ("numpy.ndarray", "py:class",
         "reference/generated/numpy.ndarray.html#numpy.ndarray", "-"),
        ("numpy.dtype", "py:class",
         "reference/generated/numpy.dtype.html#numpy.dtype", "-"),
        ("numpy.random.RandomState", "py:class",
         "reference/random/legacy.html#numpy.random.RandomState", "-"),
        ("numpy.random.Generator", "py:class",
         "reference/random/generator.html#numpy.random.Generator", "-"),
        ("array_like", "std:term", "glossary.html#term-array_like", "-"),
    ],
    "sklearn": [
        *[
            (f"sklearn.{name}", "py:class",
             f"modules/generated/sklearn.{name}.html#sklearn.{name}", "-")
            for name in (
                "pipeline.Pipeline",
                "decomposition.PCA",
                "decomposition.MiniBatchDictionaryLearning",
                "decomposition.DictionaryLearning",
                "decomposition.FactorAnalysis",
                "model_selection.GridSearchCV",
                "preprocessing.StandardScaler",
                "linear_model.LogisticRegression",
                "utils.metadata_routing.MetadataRequest",
                "utils.metadata_routing.MetadataRouter",
            )
        ],
        ("sklearn.decomposition.sparse_encode", "py:function",
         "modules/generated/sklearn.decomposition.sparse_encode.html"
         "#sklearn.decomposition.sparse_encode", "-"),
        ("sklearn.base.BaseEstimator", "py:class",
         "modules/generated/sklearn.base.BaseEstimator.html"
         "#sklearn.base.BaseEstimator", "-"),
        ("sklearn.base.TransformerMixin", "py:class",
         "modules/generated/sklearn.base.TransformerMixin.html"
         "#sklearn.base.TransformerMixin", "-"),
        ("sklearn.base.ClassNamePrefixFeaturesOutMixin", "py:class",
         "modules/generated/sklearn.base.ClassNamePrefixFeaturesOutMixin.html"
         "#sklearn.base.ClassNamePrefixFeaturesOutMixin", "-"),
        # Labels that the docstrings of inherited methods (set_output,
        # get_metadata_routing) point to.
        ("metadata_routing", "std:label",
         "metadata_routing.html#metadata-routing", "Metadata Routing"),
        ("df_output_transform", "std:label",
         "developers/develop.html#developer-api-for-set-output",
         "Developer API for set_output"),
        ("sphx_glr_auto_examples_miscellaneous_plot_set_output.py",
         "std:label",
         "auto_examples/miscellaneous/plot_set_output.html"
         "#sphx-glr-auto-examples-miscellaneous-plot-set-output-py",
         "Introducing the set_output API"),
        ("glossary", "std:label", "glossary.html#glossary",
         "Glossary of Common Terms and API Elements"),
    ],
    "torch": [
        ("torch.Tensor", "py:class", "tensors.html#torch.Tensor", "-"),
        ("torch.nn.Module", "py:class",
         "generated/torch.nn.Module.html#torch.nn.Module", "-"),
        ("torch.device", "py:class",
         "tensor_attributes.html#torch.device", "-"),
        ("torch.dtype", "py:class", "tensor_attributes.html#torch.dtype", "-"),
        ("torch.compile", "py:function",
         "generated/torch.compile.html#torch.compile", "-"),
    ],
}


def write_inventory(project, entries, path):
    """Write one objects.inv (format version 2) holding ``entries``."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        "# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(
        f"{name} {role} 1 {uri} {title}\n"
        for name, role, uri, title in sorted(entries)
    )
    with open(path, "wb") as file:
        file.write(header.encode() + zlib.compress(body.encode()))


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    for project, entries in ENTRIES.items():
        write_inventory(project, entries, os.path.join(here, f"{project}.inv"))
