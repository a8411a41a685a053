"""``hvae data download``: fetch a public data set when the user asks (hvae never downloads otherwise).

The files come from the data sets' own published archives (Google's Magenta storage). Fetching is
torch's (``torch.hub.download_url_to_file``: a temporary file, a progress bar, then a rename);
unpacking is the standard library's. Each data set keeps its license: it is printed after the
download and lies in the archive.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import urllib.error
import zipfile
from pathlib import Path

from hvae.errors import HvaeError


@dataclasses.dataclass(frozen=True)
class DataSet:
    name: str
    url: str  # a zip archive
    folder: str  # the top folder the archive unpacks into
    license: str  # what the user must know to use and share it


DATA_SETS = {
    "groove": DataSet(
        "groove", "https://storage.googleapis.com/magentadata/datasets/groove/groove-v1.0.0-midionly.zip", "groove",
        "Groove MIDI Dataset v1.0.0 (Gillick, Roberts, Engel, Eck, Bamman; Google Magenta), CC BY 4.0: keep this "
        "attribution wherever you share any of it (https://creativecommons.org/licenses/by/4.0/)."),
    "maestro": DataSet(
        "maestro", "https://storage.googleapis.com/magentadata/datasets/maestro/v3.0.0/maestro-v3.0.0-midi.zip",
        "maestro-v3.0.0",
        "MAESTRO v3.0.0 (Hawthorne et al.; Google Magenta), CC BY-NC-SA 4.0: non-commercial use, share alike "
        "(https://creativecommons.org/licenses/by-nc-sa/4.0/)."),
}


def download(name: str, out_dir: str | os.PathLike, url: str | None = None, progress: bool = True) -> Path:
    """Fetch data set ``name`` (see DATA_SETS) into ``out_dir`` and unpack it; returns its folder.

    ``url`` replaces the data set's address (a mirror). A folder already there is kept as it is.
    The archive is unpacked beside the target and moved into place at the end, so an interrupted
    download leaves no half data set. Raises :class:`HvaeError` with one line for an unknown name,
    a failed download or a bad archive.
    """
    if name not in DATA_SETS:
        raise HvaeError(f"Unknown data set {name!r}. Known: {', '.join(sorted(DATA_SETS))}.")
    data_set = DATA_SETS[name]
    out_dir = Path(out_dir)
    target = out_dir / data_set.folder
    if target.is_dir() and any(target.iterdir()):
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f".{data_set.name}-download.zip"
    unpacked = out_dir / f".{data_set.name}-unpacking"
    shutil.rmtree(unpacked, ignore_errors=True)  # left by an interrupted download
    source = url or data_set.url
    try:
        import torch.hub

        torch.hub.download_url_to_file(source, os.fspath(archive), progress=progress)
        with zipfile.ZipFile(archive) as zipped:
            broken = zipped.testzip()
            if broken is not None:
                raise HvaeError(f"The archive from {source} is damaged ({broken} fails its check); try again.")
            unsafe = [n for n in zipped.namelist() if n.startswith(("/", "\\")) or ".." in Path(n).parts]
            if unsafe:
                raise HvaeError(f"The archive from {source} holds paths outside its folder ({unsafe[0]}); "
                                f"not unpacked.")
            zipped.extractall(unpacked)
        if not (unpacked / data_set.folder).is_dir():
            found = sorted(p.name for p in unpacked.iterdir())
            raise HvaeError(f"The archive from {source} has no {data_set.folder}/ folder (it holds "
                            f"{', '.join(found) or 'nothing'}); nothing was kept.")
        shutil.rmtree(target, ignore_errors=True)  # an empty folder of that name
        os.replace(unpacked / data_set.folder, target)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise HvaeError(f"Could not download {name} from {source}: {reason}.") from None
    except zipfile.BadZipFile:
        raise HvaeError(f"What {source} sent is not a zip archive; nothing was unpacked.") from None
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(unpacked, ignore_errors=True)
    return target
