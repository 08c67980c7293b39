"""What a model package may rebuild when it is loaded: an explicit allowlist of classes, and a short reviewed list
of functions, shared by the ``keel`` and ``skops`` formats.

Trust by module prefix is not trust: numpy, scipy and scikit-learn hold functions that execute strings
(``numpy.testing._private.utils.runstring``), open files (``numpy.memmap``, ``numpy.DataSource``) or unpickle
(``numpy.load``, ``joblib.load``). So a name is rebuilt only if it is on one of these lists:

- the public estimators and transformers of scikit-learn (the classes in ``__all__`` of the subpackages in
  :data:`SKLEARN_ESTIMATOR_MODULES` that derive from ``BaseEstimator``);
- the private helper classes fitted estimators hold (:data:`HELPER_CLASSES`: tree storage, losses, binning ...),
  and a few other public library classes (:data:`LIBRARY_CLASSES`: sparse matrices, B-splines, KD-trees);
- numpy's arrays, dtypes, scalar types and random generators, and Python's plain builtin types;
- the functions of :data:`LIBRARY_FUNCTIONS` (``numpy.log1p`` in a ``FunctionTransformer`` ...);
- the names the caller trusts explicitly (``trusted_types``): the user's own classes and functions.

Anything else is refused by name, before any object is built and before its module is imported: a name is
looked up in these lists as a string first, and only a listed module is imported. Keel stores none of its own
classes in a package (the schema and metadata are plain values), so none is listed.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from keel.errors import IntegrityError, ValidationError

__all__ = [
    "HELPER_CLASSES",
    "LIBRARY_CLASSES",
    "LIBRARY_FUNCTIONS",
    "SKLEARN_ESTIMATOR_MODULES",
    "Kind",
    "allowed",
    "check_built",
    "resolve",
    "trusted_set",
    "untrusted_error",
]

Kind = Literal["class", "function"]

#: scikit-learn subpackages whose public estimators are trusted. Not ``sklearn.model_selection``: a fitted search
#: holds splitters, scorers and masked result arrays, and Keel stores the best estimator, not the search.
SKLEARN_ESTIMATOR_MODULES = (
    "sklearn.calibration",
    "sklearn.cluster",
    "sklearn.compose",
    "sklearn.covariance",
    "sklearn.cross_decomposition",
    "sklearn.decomposition",
    "sklearn.discriminant_analysis",
    "sklearn.dummy",
    "sklearn.ensemble",
    "sklearn.feature_extraction",
    "sklearn.feature_extraction.image",
    "sklearn.feature_extraction.text",
    "sklearn.feature_selection",
    "sklearn.frozen",
    "sklearn.gaussian_process",
    "sklearn.impute",
    "sklearn.isotonic",
    "sklearn.kernel_approximation",
    "sklearn.kernel_ridge",
    "sklearn.linear_model",
    "sklearn.manifold",
    "sklearn.mixture",
    "sklearn.multiclass",
    "sklearn.multioutput",
    "sklearn.naive_bayes",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.random_projection",
    "sklearn.semi_supervised",
    "sklearn.svm",
    "sklearn.tree",
)

#: Public classes, by public module, that are not estimators but that fitted estimators hold.
LIBRARY_CLASSES: dict[str, tuple[str, ...]] = {
    "scipy.sparse": (  # sparse outputs and fitted sparse state (one-hot, vectorizers)
        *("csr_matrix", "csc_matrix", "coo_matrix", "lil_matrix", "dok_matrix", "bsr_matrix", "dia_matrix"),
        *("csr_array", "csc_array", "coo_array", "lil_array", "dok_array", "bsr_array", "dia_array"),
    ),
    "scipy.interpolate": ("BSpline",),  # SplineTransformer
    "sklearn.neighbors": ("KDTree", "BallTree"),  # the neighbour searches' indexes
}

_DISTANCES = ("Euclidean", "SEuclidean", "Manhattan", "Chebyshev", "Minkowski", "Mahalanobis", "Haversine")

#: Private classes of fitted estimators, by their full defining name (found by storing every estimator kind Keel
#: trains, and the common ones). Reviewed: they hold numbers and arrays, and rebuild from their state only.
#: A name missing from the installed version is skipped (refused if a package names it).
HELPER_CLASSES = (
    "sklearn.tree._tree.Tree",  # every decision tree, forest and gradient boosting
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    *(
        f"sklearn._loss._loss.Cy{name}"
        for name in (
            *("AbsoluteError", "ExponentialLoss", "HalfBinomialLoss", "HalfGammaLoss", "HalfMultinomialLoss"),
            *("HalfPoissonLoss", "HalfSquaredError", "HalfTweedieLoss", "HalfTweedieLossIdentity", "HuberLoss"),
            "PinballLoss",
        )
    ),
    *(
        f"sklearn._loss.loss.{name}"
        for name in (
            *("AbsoluteError", "ExponentialLoss", "HalfBinomialLoss", "HalfGammaLoss", "HalfMultinomialLoss"),
            *("HalfPoissonLoss", "HalfSquaredError", "HalfTweedieLoss", "HalfTweedieLossIdentity", "HuberLoss"),
            "PinballLoss",
        )
    ),
    *(
        f"sklearn._loss.link.{name}"
        for name in ("IdentityLink", "LogLink", "LogitLink", "HalfLogitLink", "MultinomialLogit", "Interval")
    ),
    *(
        f"sklearn.linear_model._sgd_fast.{name}"  # SGD's loss objects
        for name in ("Hinge", "SquaredHinge", "ModifiedHuber", "EpsilonInsensitive", "SquaredEpsilonInsensitive")
    ),
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.utils._bunch.Bunch",  # named_estimators_ of stacking and voting ensembles
    *(f"sklearn.metrics._dist_metrics.{name}Distance{bits}" for name in _DISTANCES for bits in (64, 32)),
)

#: The only functions a package may name (``skops`` stores functions by name; the ``keel`` format stores none).
#: Each is a pure computation on arrays, with no file, process or code access: the elementwise maps a
#: ``FunctionTransformer`` or ``TransformedTargetRegressor`` typically applies, and the score functions of
#: univariate feature selection.
LIBRARY_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "numpy": ("log", "log1p", "log2", "log10", "exp", "expm1", "sqrt", "square", "absolute", "sign"),
    "sklearn.feature_selection": (
        *("f_classif", "f_regression", "r_regression", "chi2", "mutual_info_classif", "mutual_info_regression"),
    ),
}

#: Private functions by full defining name: SplineTransformer's B-splines keep scipy's array-API ``asarray``.
HELPER_FUNCTIONS = ("scipy._lib.array_api_compat.numpy._aliases.asarray",)

_BUILTINS: dict[str, type] = {
    t.__name__: t
    for t in (bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset, slice, type(None))
}


# -- the index: (defining module, qualname) -> the object --------------------------------------------------------
class _Index:
    """The allowlist resolved to objects, built lazily: one public module at a time, on the first name under it."""

    def __init__(self) -> None:
        self.classes: dict[tuple[str, str], Any] = {}
        self.functions: dict[tuple[str, str], Any] = {}
        self.loaded: set[str] = set()
        self.numpy_done = False
        # a package loads in serving threads too: one thread builds, the others wait for a complete table
        self.lock = threading.Lock()

    def lookup(self, module: str, qualname: str, kind: Kind) -> Any | None:
        table = self.classes if kind == "class" else self.functions
        found = table.get((module, qualname))
        if found is not None:
            return found
        top = module.partition(".")[0]
        if top == "builtins":
            cls = _BUILTINS.get(qualname)
            return cls if kind == "class" else None
        with self.lock:
            if top == "numpy" and not self.numpy_done:
                self._numpy()
            for public in _public_modules_of(module):
                if public not in self.loaded:
                    self._public(public)
            full = f"{module}.{qualname}"
            if full in (HELPER_CLASSES if kind == "class" else HELPER_FUNCTIONS):
                obj = _import(module, qualname)
                if obj is not None and (isinstance(obj, type) == (kind == "class")):
                    table[(module, qualname)] = obj
            return table.get((module, qualname))

    def _add(self, obj: Any, kind: Kind, *aliases: tuple[str, str]) -> None:
        table = self.classes if kind == "class" else self.functions
        name = str(getattr(obj, "__qualname__", None) or getattr(obj, "__name__", ""))
        module = str(getattr(obj, "__module__", None) or "")
        table[(module, name)] = obj
        for alias in aliases:
            table[alias] = obj

    def _numpy(self) -> None:
        """numpy's arrays, dtypes, scalar types, random generators (numpy is imported already: no new module)."""
        for cls in {*np.sctypeDict.values(), np.ndarray, np.dtype}:
            self._add(cls, "class", ("numpy", cls.__name__))
        for name in getattr(np.dtypes, "__all__", ()):
            self._add(getattr(np.dtypes, name), "class")
        random = np.random
        for name in dir(random):
            obj = getattr(random, name)
            if isinstance(obj, type) and issubclass(obj, random.BitGenerator) and obj is not random.BitGenerator:
                self._add(obj, "class", ("numpy.random", name))
        for cls in (random.Generator, random.RandomState, random.SeedSequence):
            self._add(cls, "class", ("numpy.random", cls.__name__))
        self.numpy_done = True

    def _public(self, public: str) -> None:
        """The listed names of one public module (imported: it is on the list)."""
        self.loaded.add(public)
        try:
            module = importlib.import_module(public)
        except ImportError:  # an optional library that is not installed: nothing of it can be trusted
            return
        if public in SKLEARN_ESTIMATOR_MODULES:
            from sklearn.base import BaseEstimator

            for name in _public_names(module):
                obj = getattr(module, name, None)
                if isinstance(obj, type) and issubclass(obj, BaseEstimator):
                    self._add(obj, "class")
        for name in LIBRARY_CLASSES.get(public, ()):
            obj = getattr(module, name, None)
            if isinstance(obj, type):
                self._add(obj, "class")
        for name in LIBRARY_FUNCTIONS.get(public, ()):
            obj = getattr(module, name, None)
            if callable(obj) and not isinstance(obj, type):
                self._add(obj, "function", (public, name))


def _public_names(module: Any) -> list[str]:
    """The public names of ``module``: its ``__all__``, or (a module without one, such as ``sklearn.dummy``) the
    names without a leading underscore of what it defines itself."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if getattr(v, "__module__", None) == module.__name__]
    return [n for n in names if not n.startswith("_")]


_PUBLIC_MODULES = frozenset((*SKLEARN_ESTIMATOR_MODULES, *LIBRARY_CLASSES, *LIBRARY_FUNCTIONS))


def _public_modules_of(module: str) -> list[str]:
    """The listed public modules that hold ``module`` (a class defined in ``sklearn.tree._classes`` is exported by
    ``sklearn.tree``); only those are ever imported to look a name up."""
    parts = module.split(".")
    return [p for p in (".".join(parts[:n]) for n in range(1, len(parts) + 1)) if p in _PUBLIC_MODULES]


def _import(module: str, qualname: str) -> Any | None:
    """``module.qualname`` imported, or None when it does not exist."""
    if any(not p.isidentifier() or p.startswith("__") for p in (*module.split("."), *qualname.split("."))):
        return None
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj


_INDEX = _Index()
#: Names the caller trusted, once imported, by full name (consulted only when the name is trusted again).
_TRUSTED_IMPORTS: dict[str, Any] = {}


def trusted_set(trusted_types: Iterable[str] | None) -> frozenset[str]:
    """``trusted_types`` as a set of full names (``"mypkg.MyTransformer"``).

    Raises:
        ValidationError: a name is not a dotted ``module.name`` string.
    """
    if not trusted_types:
        return frozenset()
    if isinstance(trusted_types, str):
        trusted_types = [trusted_types]
    names = frozenset(trusted_types)
    bad = [n for n in names if not isinstance(n, str) or "." not in n.strip(".")]
    if bad:
        raise ValidationError(
            f"trusted_types takes full names such as 'mypkg.MyTransformer', got {bad!r}", field="trusted_types"
        )
    return names


def allowed(module: str, qualname: str, kind: Kind, trusted: frozenset[str] = frozenset()) -> bool:
    """Whether the class (or function) ``module.qualname`` may be rebuilt.

    Only allowlisted modules are imported to answer (never the module the name names, unless it is listed).
    """
    return f"{module}.{qualname}" in trusted or _INDEX.lookup(module, qualname, kind) is not None


def resolve(module: Any, qualname: Any, what: str = "model package", trusted: frozenset[str] = frozenset()) -> type:
    """The allowlisted (or trusted) class ``module.qualname``.

    Raises:
        IntegrityError: the name is not on the allowlist nor trusted, names a function, or is not found.
    """
    if type(module) is not str or type(qualname) is not str:
        raise IntegrityError(f"{what} is malformed (a type name is not a string); refused")
    found = _INDEX.classes.get((module, qualname))
    if found is not None:
        return found  # type: ignore[no-any-return]
    name = f"{module}.{qualname}"
    if name in trusted:
        obj = _TRUSTED_IMPORTS.get(name)
        if obj is None:
            obj = _import(module, qualname)
            if obj is None:
                raise IntegrityError(f"{what} names {name}, which cannot be found; refused")
            _TRUSTED_IMPORTS[name] = obj
        if not isinstance(obj, type):
            raise IntegrityError(f"{what} names {name}, which is not a class; refused")
        return obj
    cls = _INDEX.lookup(module, qualname, "class")
    if cls is not None:
        return cls  # type: ignore[no-any-return]
    if allowed(module, qualname, "function"):
        raise IntegrityError(f"{what} names {name}, which is not a class; refused")
    raise untrusted_error(what, [name])


def untrusted_error(what: str, names: Iterable[str]) -> IntegrityError:
    """The error for names outside the allowlist: which, and how to trust them if they are the user's own."""
    listed = sorted(set(names))
    example = ", ".join(repr(n) for n in listed[:3])
    return IntegrityError(
        f"{what} holds types outside Keel's allowlist ({', '.join(listed)}); refused: loading them could run "
        f"code. If they are your own and you trust this package, name them: trusted_types=[{example}] "
        f"(ModelRegistry.load, keel.models.loads) or 'trusted_types: [{', '.join(listed[:3])}]' in keel.yaml"
    )


def check_built(cls: type, *, called: bool, newargs: bool) -> None:
    """Refuses ``cls`` as the class of a rebuilt object, unless it asked to be rebuilt this way.

    A class is *called* with arguments only if it defines its own ``__reduce__``/``__reduce_ex__`` (an
    extension type such as ``sklearn.tree._tree.Tree`` that pickles as ``(cls, args, state)``); ``__new__``
    gets arguments only if the class defines ``__getnewargs__``/``__getnewargs_ex__``. Builtins, arrays,
    numpy scalars and dtypes have their own node kinds and are never rebuilt as objects.
    """
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__module__ == "builtins" or issubclass(cls, np.ndarray | np.generic | np.dtype | type):
        raise IntegrityError(f"{name} is not rebuilt as an object; refused")
    if called and cls.__reduce__ is object.__reduce__ and cls.__reduce_ex__ is object.__reduce_ex__:
        raise IntegrityError(f"{name} does not define how it is rebuilt by a call; refused")
    if newargs and not (hasattr(cls, "__getnewargs__") or hasattr(cls, "__getnewargs_ex__")):
        raise IntegrityError(f"{name} does not define arguments for __new__; refused")
