"""The README's SDK snippet runs as printed against a live server (with the tiny model swapped in
for the built-in one, so that it trains in seconds)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_sdk_snippet_works(serve, tiny_model_dir, orders, tmp_path):
    snippet = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert 'model="smollm2-135m-instruct"' in snippet
    snippet = snippet.replace('model="smollm2-135m-instruct"', f'model="{tiny_model_dir}"')
    snippet = snippet.replace("time.sleep(5)", "time.sleep(0.5)")
    (tmp_path / "train.jsonl").write_text(
        "".join((orders / "train.jsonl").read_text().splitlines(keepends=True)[:10])
    )
    url = serve(workers=1, model_dirs=[tiny_model_dir])
    env = {**os.environ, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "local"}
    done = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "The job has successfully completed" in done.stdout
