"""Every replacement of a basicsr attribute is marked, so a patch applied twice (a second ``apply_all()``, a
reload) returns early instead of wrapping basicsr's function twice."""
_MARK = '_promptir_basicsr_patch'


def ours(obj):
    """Mark ``obj`` as one of our replacements; returns it."""
    setattr(obj, _MARK, True)
    return obj


def is_ours(obj):
    return getattr(obj, _MARK, False)
