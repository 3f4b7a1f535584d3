"""Synthetic but valid DICOM studies (pydicom + numpy only): a library port of pacs-lab/make-dataset.py.

Layout: OUT/<PatientID>/StudyNNN/SeriesNNN/IMGNNNNN.dcm (Part-10, Explicit VR Little Endian) plus
OUT/manifest.json. One modality per study, cycled through `modalities`:
  CT  int16 MONOCHROME2, RescaleSlope 1 / RescaleIntercept -1024, WindowCenter 40 / Width 400
  MR  uint16 MONOCHROME2 (12 bits stored)
  US  uint8 RGB
Same arguments => byte-identical files (UIDs come from generate_uid with entropy_srcs), and with the
defaults the same bytes as the lab script, so lab numbers and test data describe the same images.

    python -m apps.dicom.demo.synthetic --patients 1 --instances 20 --rows 64 --cols 64 --out /tmp/ds
"""
import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2",      # CT Image Storage
             "MR": "1.2.840.10008.5.1.4.1.1.4",      # MR Image Storage
             "US": "1.2.840.10008.5.1.4.1.1.6.1"}    # Ultrasound Image Storage
BODY = {"CT": ["CHEST", "ABDOMEN", "HEAD"], "MR": ["BRAIN", "KNEE", "SPINE"], "US": ["ABDOMEN", "THYROID"]}
FAMILY = ["Smith", "Dubois", "Muller", "Rossi", "Garcia", "Jansen", "Nowak", "Silva", "Kim", "Olsen"]
GIVEN = ["Anna", "Ben", "Chloe", "David", "Emma", "Farid", "Greta", "Hugo", "Ines", "Jonas"]


def uid(seed, *parts):
    """Deterministic UID: same seed and parts give the same UID."""
    return generate_uid(entropy_srcs=[f"pacs-lab:{seed}"] + [str(p) for p in parts])


def phantom(rows, cols):
    """Ellipse 'body' mask in [0, 1] used as the base image of every slice."""
    y, x = np.ogrid[-1:1:rows * 1j, -1:1:cols * 1j]
    return ((x / 0.8) ** 2 + (y / 0.65) ** 2 <= 1.0).astype(np.float32)


def pixels(mod, body, k, n, rng):
    rows, cols = body.shape
    if mod == "CT":  # stored value = HU + 1024 ; air -1000 HU, soft tissue ~40 HU, a moving 'organ'
        hu = np.where(body > 0, 40.0, -1000.0) + rng.normal(0, 12, body.shape)
        r, c = rows // 2 + int(rows * 0.15 * np.sin(k / max(n, 1) * np.pi)), cols // 2
        hu[r - rows // 10:r + rows // 10, c - cols // 10:c + cols // 10] += 300
        return np.clip(hu + 1024, 0, 4095).astype(np.int16)
    if mod == "MR":
        return np.clip(body * 1800 + rng.normal(150, 40, body.shape), 0, 4095).astype(np.uint16)
    gray = np.clip(body * 120 + rng.normal(30, 25, body.shape), 0, 255).astype(np.uint8)  # US
    return np.repeat(gray[:, :, None], 3, axis=2)


def make_instance_dataset(seed, mod, pat, study, series, k, n_instances, rng, body):
    """One image as a pydicom Dataset with file meta. `pat`, `study`, `series` are the dicts built by
    write_dataset (PatientID/PatientName/BirthDate/Sex; i/uid/date/time/acc; i/uid/body)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = {"CT": ["ORIGINAL", "PRIMARY", "AXIAL"], "MR": ["ORIGINAL", "PRIMARY", "OTHER"]}.get(
        mod, ["ORIGINAL", "PRIMARY"])
    ds.SOPClassUID = SOP_CLASS[mod]
    ds.SOPInstanceUID = uid(seed, "sop", pat["PatientID"], study["i"], series["i"], k)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study["date"]
    ds.StudyTime, ds.SeriesTime = study["time"], study["time"]
    ds.ContentTime = f"{study['time'][:4]}{k % 60:02d}"
    ds.AccessionNumber = study["acc"]
    ds.Modality = mod
    ds.Manufacturer = "PACS-LAB Synthetic"
    ds.InstitutionName = "PACS Lab Hospital"
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StudyDescription = f"{mod} {series['body']}"
    ds.SeriesDescription = f"{mod} {series['body']} series {series['i'] + 1}"
    ds.PatientName = pat["PatientName"]
    ds.PatientID = pat["PatientID"]
    ds.PatientBirthDate = pat["BirthDate"]
    ds.PatientSex = pat["Sex"]
    ds.BodyPartExamined = series["body"]
    ds.StudyInstanceUID = study["uid"]
    ds.SeriesInstanceUID = series["uid"]
    ds.StudyID = str(study["i"] + 1)
    ds.SeriesNumber = series["i"] + 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = k + 1
    ds.PatientOrientation = ""
    ds.Rows, ds.Columns = body.shape
    arr = pixels(mod, body, k, n_instances, rng)
    if mod in ("CT", "MR"):
        ds.FrameOfReferenceUID = uid(seed, "for", pat["PatientID"], study["i"], series["i"])
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = [-175.0, -175.0, round(-k * 1.25, 2)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = round(-k * 1.25, 2)
        ds.SliceThickness = 1.25
        ds.PixelSpacing = [round(350.0 / ds.Rows, 4), round(350.0 / ds.Columns, 4)]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = 16
    if mod == "CT":
        ds.KVP = 120
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
    elif mod == "MR":
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength, ds.MagneticFieldStrength = 500, 15, 1, 1.5
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 1000, 2000
    elif mod == "US":
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = arr.tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "PACSLAB_1"
    ds.file_meta = meta
    return ds


def _as_date(value):
    if value is None or isinstance(value, dt.date):
        return value
    return dt.datetime.strptime(str(value).replace("-", ""), "%Y%m%d").date()


def write_dataset(out_dir, *, patients=2, studies=1, series=1, instances=10, rows=64, cols=64,
                  modalities=("CT", "MR", "US"), seed=0, id_prefix="PAT", first_date=None) -> dict:
    """Write the dataset under out_dir and return its manifest (also written to out_dir/manifest.json).

    first_date (date or 'YYYYMMDD'/'YYYY-MM-DD'): when given, the n-th study overall (0-based) is dated
    first_date + n days instead of a random day in 2020-2024, so tests can query known date ranges.
    The random draw still happens, so every other value stays what it would be without first_date.
    instances: per series, or a list of the count of each series (then it says how many series there are).
    """
    counts = [instances] * series if isinstance(instances, int) else [int(count) for count in instances]
    mods = [m.strip().upper() for m in modalities if m.strip()]
    unknown = [m for m in mods if m not in SOP_CLASS]
    if not mods or unknown:
        raise ValueError(f"modalities must be among {list(SOP_CLASS)}, got {list(modalities)}")
    first_day = _as_date(first_date)
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    body = phantom(rows, cols)
    nfiles, nbytes, entries, nstudy = 0, 0, [], 0
    for pi in range(patients):
        pid = f"{id_prefix}{pi + 1:05d}"
        pat = {"PatientID": pid,
               "PatientName": f"{FAMILY[pi % 10]}^{GIVEN[(pi // 10) % 10]}^P{pi + 1}",
               "BirthDate": (dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 29000)))).strftime("%Y%m%d"),
               "Sex": "MF"[pi % 2]}
        for si in range(studies):
            mod = mods[nstudy % len(mods)]
            day = dt.date(2020, 1, 1) + dt.timedelta(days=int(rng.integers(0, 1800)))
            if first_day is not None:
                day = first_day + dt.timedelta(days=nstudy)
            nstudy += 1
            study = {"i": si, "uid": uid(seed, "study", pid, si), "date": day.strftime("%Y%m%d"),
                     "time": f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}00",
                     "acc": f"ACC{pi + 1:05d}{si + 1:03d}"}
            entry = {"PatientID": pid, "PatientName": pat["PatientName"], "StudyInstanceUID": study["uid"],
                     "StudyDate": study["date"], "AccessionNumber": study["acc"], "Modality": mod, "Series": []}
            for ri, count in enumerate(counts):
                series_info = {"i": ri, "uid": uid(seed, "series", pid, si, ri),
                               "body": BODY[mod][int(rng.integers(0, len(BODY[mod])))]}
                folder = out / pid / f"Study{si + 1:03d}" / f"Series{ri + 1:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                for k in range(count):
                    path = folder / f"IMG{k + 1:05d}.dcm"
                    ds = make_instance_dataset(seed, mod, pat, study, series_info, k, count, rng, body)
                    ds.save_as(path, enforce_file_format=True)
                    nfiles += 1
                    nbytes += path.stat().st_size
                entry["Series"].append({"SeriesInstanceUID": series_info["uid"], "Instances": count})
            entries.append(entry)
    manifest = {"seed": seed, "files": nfiles, "bytes": nbytes, "studies": entries}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patients", type=int, default=2)
    p.add_argument("--studies", type=int, default=1, help="studies per patient")
    p.add_argument("--series", type=int, default=1, help="series per study")
    p.add_argument("--instances", type=int, default=10, help="instances per series")
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--cols", type=int, default=512)
    p.add_argument("--modalities", default="CT,MR,US", help="comma list, cycled per study")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--id-prefix", default="PAT", help="PatientID prefix (PAT00001, ...)")
    p.add_argument("--first-date", default=None, help="YYYYMMDD: date studies consecutively from this day")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    t0 = time.time()
    try:
        manifest = write_dataset(a.out, patients=a.patients, studies=a.studies, series=a.series,
                                 instances=a.instances, rows=a.rows, cols=a.cols,
                                 modalities=a.modalities.split(","), seed=a.seed, id_prefix=a.id_prefix,
                                 first_date=a.first_date)
    except ValueError as exc:
        p.error(str(exc))
    print(f"wrote {manifest['files']} files, {manifest['bytes'] / 1e6:.1f} MB to {a.out} in "
          f"{time.time() - t0:.1f}s; manifest: {os.path.join(a.out, 'manifest.json')}")


if __name__ == "__main__":
    main()
