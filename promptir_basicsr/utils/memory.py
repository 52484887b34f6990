"""The process's memory as Linux reports it, and sizes as people write them (``--max-memory 4G``).

Peak memory here is the peak resident set (``VmHWM`` in ``/proc/self/status``): what the kernel counts
against the machine, whatever allocated it (torch, onnxruntime's arena, OpenCV, numpy). :func:`reset_peak`
returns freed heap memory to the system (``malloc_trim``) and restarts ``VmHWM`` from the current
resident size (``/proc/self/clear_refs``, Linux 4.0 and later), so the peak of one piece of work can be
measured inside a long-running process. Only the standard library here: the parser of ``basicsr restore``
uses :func:`parse_size`.
"""
import argparse
import ctypes
import ctypes.util
import os
import re

_UNITS = {'': 1, 'K': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}
_SIZE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$', re.IGNORECASE)


def parse_size(text):
    """'4G', '512M', '1.5GiB', '2048MB' -> bytes (K, M, G, T are powers of 1024; a bare number is bytes).
    Raises ``argparse.ArgumentTypeError`` (argparse prints it as a usage error)."""
    match = _SIZE.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f'expected a size such as 4G, 512M or 1.5G, got {text!r}')
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def format_size(num_bytes):
    """Bytes as '3.42 GiB' / '512 MiB'."""
    if abs(num_bytes) >= 2**30:
        return f'{num_bytes / 2**30:.2f} GiB'
    return f'{num_bytes / 2**20:.0f} MiB'


def _status_bytes(key):
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resident():
    """The process's resident memory now (``VmRSS``), in bytes; None where /proc is missing."""
    return _status_bytes('VmRSS')


def peak_resident():
    """The process's peak resident memory (``VmHWM``), in bytes; None where /proc is missing."""
    return _status_bytes('VmHWM')


def available():
    """Memory the machine can still give without swapping (``MemAvailable``), in bytes; None if unknown."""
    try:
        with open('/proc/meminfo', encoding='ascii') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError):
        return None


def _libc():
    name = ctypes.util.find_library('c')
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _libc()


def trim():
    """Give freed heap memory back to the system (glibc's ``malloc_trim``), so that the resident size counts
    what is in use rather than what was used once."""
    if _LIBC is not None and hasattr(_LIBC, 'malloc_trim'):
        _LIBC.malloc_trim(0)


_PEAK_BEFORE_RESETS = [0]  # the highest VmHWM that a reset_peak erased


def lifetime_peak():
    """The process's peak resident memory over its whole life, bytes: what :func:`reset_peak` erased included
    (``ru_maxrss`` of a process counts only since its last reset). None where /proc is missing."""
    now = peak_resident()
    return None if now is None else max(now, _PEAK_BEFORE_RESETS[0])


def reset_peak():
    """:func:`trim`, then restart the peak (``VmHWM``) from the current resident size, remembering the peak it
    erases (:func:`lifetime_peak`). Returns False where the kernel does not allow it (then :func:`peak_resident`
    keeps the whole life's peak)."""
    _PEAK_BEFORE_RESETS[0] = max(_PEAK_BEFORE_RESETS[0], peak_resident() or 0)
    trim()
    try:
        with open('/proc/self/clear_refs', 'w', encoding='ascii') as f:
            f.write('5')
        return True
    except OSError:
        return False
