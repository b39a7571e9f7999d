"""Lists of file paths saved beside feature arrays: one JSON string per line.

JSON lines, not plain lines: a file name may hold a newline (or any other
character), and the list must stay in step with the feature rows.
"""

import json

__all__ = ["read_path_list", "write_json_lines", "write_path_list"]


def write_path_list(handle, paths):
    """Write ``paths`` to an open text ``handle``, one JSON string per line.

    Examples
    --------
    >>> import io
    >>> buffer = io.StringIO()
    >>> write_path_list(buffer, ["a.jpg", "odd\\nname.png"])
    >>> buffer.getvalue()
    '"a.jpg"\\n"odd\\\\nname.png"\\n'
    """
    write_json_lines(handle, (str(path) for path in paths))


def write_json_lines(handle, items):
    """Write JSON-serialisable ``items`` to ``handle``, one per line.

    ASCII JSON: newlines, odd characters and undecodable bytes (surrogate
    escapes) in file names all fit on one line.
    """
    handle.writelines(json.dumps(item) + "\n" for item in items)


def read_path_list(path):
    """The paths of a file written by :func:`write_path_list`."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
