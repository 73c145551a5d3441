"""Validates an SBOM with the official tools: CycloneDX's JSON schema (strict, via
cyclonedx-python-lib, which carries bom-1.5/1.6.schema.json) or the SPDX project's
spdx-tools (parse, then the SPDX 2.3 validation rules).

    validate_sbom.py cyclonedx 1.6 bom.json
    validate_sbom.py spdx 2.3 bom.spdx.json

Prints what is wrong and exits 1, or prints "valid" and exits 0.
"""
import sys


def cyclonedx(spec, path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    version = {"1.5": SchemaVersion.V1_5, "1.6": SchemaVersion.V1_6}[spec]
    with open(path, encoding="utf-8") as f:
        error = JsonStrictValidator(version).validate_str(f.read())
    return [] if error is None else [str(error)]


def spdx(spec, path):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    document = parse_file(path)
    return [m.validation_message for m in validate_full_spdx_document(document, spdx_version="SPDX-" + spec)]


def main():
    kind, spec, path = sys.argv[1:4]
    problems = {"cyclonedx": cyclonedx, "spdx": spdx}[kind](spec, path)
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print("valid")


if __name__ == "__main__":
    main()
