"""Run diffusers' own fast tests for TextToVideoSDPipeline against t2v.TextToVideoPipeline.

    python experiments/diffusers-fast-tests/run.py DIFFUSERS_GIT_DIR [--pipeline diffusers|t2v] [pytest args]

DIFFUSERS_GIT_DIR: a clone of github.com/huggingface/diffusers (a bare mirror works). The test file
was removed with the deprecated pipelines; its last version is at commit 62cce3045d, whose `tests/`
folder is exported to a temporary directory and run against the installed diffusers, with two
changes made on the fly (diffusers' code is run, never copied into t2v):
  - the tiny CLIP tokenizer it downloads (hf-internal-testing/tiny-random-clip) is replaced by an
    offline one with a byte-level vocabulary of the same kind, built here;
  - `--safetensors` makes the tests that save pickle weights save safetensors (t2v refuses pickle);
  - `--pipeline t2v` swaps the pipeline class for t2v.TextToVideoPipeline; `--pipeline diffusers`
    keeps diffusers' own (its deprecation skip is lifted so that its tests run too).
Needs `pip install parameterized requests-mock` (the test harness imports them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


COMMIT = "62cce3045d"  # the last commit with tests/pipelines/text_to_video_synthesis/test_text_to_video.py
TEST = "tests/pipelines/text_to_video_synthesis/test_text_to_video.py"
TOKENIZER_HELPER = '''
import json, tempfile
from pathlib import Path
from transformers import CLIPTokenizer


def byte_chars():
    """The 256 printable characters GPT-2 style byte-level BPE maps bytes to."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(extra))]


def offline_tokenizer():
    """A CLIP byte-level BPE tokenizer with no merges: ids < 520, within the tiny encoder's vocabulary."""
    chars = byte_chars()
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for token in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(token, len(vocab))
    folder = Path(tempfile.mkdtemp())
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="!", model_max_length=77)
'''


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("diffusers_git_dir")
    parser.add_argument("--pipeline", choices=("diffusers", "t2v"), default="t2v")
    parser.add_argument("--safetensors", action="store_true", help="tests save safetensors instead of pickle")
    args, pytest_args = parser.parse_known_args()
    work = Path(tempfile.mkdtemp(prefix="diffusers-tests-"))
    archive = subprocess.run(
        ["git", "-C", args.diffusers_git_dir, "archive", COMMIT, "tests"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    test = work / TEST
    source = test.read_text().replace(
        'CLIPTokenizer.from_pretrained("hf-internal-testing/tiny-random-clip")', "offline_tokenizer()"
    )
    source = source.replace("import gc\n", "import gc\nfrom .offline_tokenizer import offline_tokenizer\n", 1)
    if args.pipeline == "t2v":
        source = source.replace(
            "pipeline_class = TextToVideoSDPipeline", "pipeline_class = __import__('t2v').TextToVideoPipeline"
        ).replace("sd_pipe = TextToVideoSDPipeline(**components)", "sd_pipe = self.pipeline_class(**components)")
        # the harness reads encode_prompt's source from diffusers.pipelines.<class name> (in-tree classes only)
        source += "\nimport diffusers.pipelines, t2v\ndiffusers.pipelines.TextToVideoPipeline = t2v.TextToVideoPipeline\n"
    else:
        common = work / "tests/pipelines/test_pipelines_common.py"
        common.write_text(common.read_text().replace("issubclass(self.pipeline_class, DeprecatedPipelineMixin)", "False"))
    if args.safetensors:
        common = work / "tests/pipelines/test_pipelines_common.py"
        common.write_text(common.read_text().replace("safe_serialization=False", "safe_serialization=True"))
    test.write_text(source)
    (test.parent / "offline_tokenizer.py").write_text(TOKENIZER_HELPER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfs", TEST, *pytest_args]
    print(json.dumps({"work": str(work), "pipeline": args.pipeline}))
    return subprocess.run(cmd, cwd=work, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
