"""The pseudonym map as CSV (the API's ?output=csv and the admin's download)."""
import csv
import io

from apps.jobs.spreadsheets import inert

MAP_FIELDS = ["PatientID", "pseudonym", "date_shift_days"]


def map_csv(rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(MAP_FIELDS)
    for row in rows:
        writer.writerow([inert(row.patient_id), row.pseudonym, row.date_shift_days])
    return buffer.getvalue()
