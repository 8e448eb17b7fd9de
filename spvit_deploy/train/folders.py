"""The data training reads, checked before any training: an ImageFolder layout (`train/<class>/*`,
`val/<class>/*`, checked without torch) or a named source (`fashion-mnist[:DIR]`, see `fashion.py`),
so a config can count the classes and data loading can refuse bad data, in one line."""
from __future__ import annotations

from pathlib import Path

from ..errors import SpvitError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def check_image_folder(root: str | Path) -> list[str]:
    """The class names of `root/train` (checked against `root/val`), or of the named source `root`
    (`fashion-mnist[:DIR]`); one-line errors for bad layouts and missing data."""
    from .fashion import check_fashion, parse_source

    source = parse_source(root)
    if source is not None:
        return check_fashion(source)
    root = Path(root)
    if not root.is_dir():
        raise SpvitError(f"data folder '{root}' does not exist; give --data DIR with train/ and val/ ImageFolders "
                          "(or --data fashion-mnist[:DIR])")
    classes: dict[str, list[str]] = {}
    for split in ("train", "val"):
        d = root / split
        if not d.is_dir():
            raise SpvitError(f"data folder '{root}' has no {split}/ folder; expected {split}/<class>/<image> files")
        names = sorted(p.name for p in d.iterdir() if p.is_dir())
        if not names:
            raise SpvitError(f"'{d}' has no class folders; expected {split}/<class>/<image> files")
        for n in names:
            if not any(f.suffix.lower() in IMAGE_EXTENSIONS for f in (d / n).iterdir() if f.is_file()):
                raise SpvitError(f"class folder '{d / n}' has no images ({', '.join(IMAGE_EXTENSIONS[:3])}, ...); "
                                 "add images or remove the folder")
        classes[split] = names
    if classes["train"] != classes["val"]:
        extra = sorted(set(classes["train"]) ^ set(classes["val"]))
        raise SpvitError(f"train/ and val/ have different classes (first difference: '{extra[0]}')")
    return classes["train"]
