"""placeholder"""
METHODS = ("miwae", "miss-iwem-woa", "miss-iwem")


def write(rows, a, command):
    import json
    from pathlib import Path
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "uci_imputation.json").write_text(json.dumps({"command": command, "settings": vars(a), "rows": rows},
                                                        indent=2) + "\n")
