"""
Every code example of the documentation (``docs/**/*.md``) and of the README runs, as written, on short budgets.

One test per page. The page's ``python`` blocks run in order in one Python session (``tests/_docs_runner.py``), its
``bash`` blocks in ``bash -e`` between them, in a fresh folder holding the repository's ``hyperparams/``,
``zoo_scripts/`` and ``benchmarks/``. Every Python process they start imports ``tests/_docs_budget.py`` through a
``sitecustomize``, which caps each ``learn()`` at ``learning_starts + 128`` env steps and each tuning study at 2
trials; nothing else is replaced. ``pip`` is a no-op in these scripts (the test runs where CI installed the package).
Placeholders are filled with real local services: ``<your-user>`` repositories live on a Hub server on 127.0.0.1
(``tests/hub_test_server.py``), the PostgreSQL URL is a throwaway server (``_tune_helpers.postgres_url``).

A block preceded by a MyST comment ``% docs-test: skip (reason)`` is not run; the reason is in the page's source
(the test command itself, multi-machine launches, benchmark runs of minutes to hours). Run with
``python -m pytest -m docs`` (part of the README's test command).
"""

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _tune_helpers import postgres_url  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
PAGES = [*sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts), ROOT / "README.md"]
STEPS = 128
MARKER = "@@docs-block-done@@"
SKIP = re.compile(r"^%\s*docs-test:\s*skip\s*\((.+)\)\s*$")
FENCE = re.compile(r"^```(\S*)\s*$")
PLACEHOLDER = re.compile(r"<[a-z][a-z -]*>")
TOKEN = "hf_test_token"
SHELL_PRELUDE = 'pip() { echo "docs test: pip $* (installed already)"; }\n'

pytestmark = [pytest.mark.docs, pytest.mark.timeout(1200)]


@dataclass
class Block:
    lang: str
    code: str
    line: int
    skip: str | None


def parse_blocks(text: str) -> list[Block]:
    """:return: The fenced code blocks of a Markdown page, with their language and skip reason."""
    blocks: list[Block] = []
    lines = text.split("\n")
    i, previous = 0, ""
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            if lines[i].strip():
                previous = lines[i]
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        skip = SKIP.match(previous.strip())
        blocks.append(Block(match.group(1), "\n".join(body) + "\n", start + 1, skip.group(1) if skip else None))
        previous, i = "", i + 1
    return blocks


def runnable(page: Path) -> list[Block]:
    return [b for b in parse_blocks(page.read_text()) if b.lang in ("python", "bash") and b.skip is None]


def test_parse_blocks_reads_languages_and_skips():
    text = "x\n```python\na = 1\n```\n% docs-test: skip (needs two machines)\n```bash\nls\n```\n```\n$ out\n```\n"
    blocks = parse_blocks(text)
    assert [(b.lang, b.code, b.skip) for b in blocks] == [
        ("python", "a = 1\n", None),
        ("bash", "ls\n", "needs two machines"),
        ("", "$ out\n", None),
    ]


# The only kinds of blocks that are not run: what CI runs anyway, what needs hardware it lacks, and benchmark runs
SKIP_KINDS = ("the test command itself", "the developer's commands", "needs two machines", "a benchmark run")


def test_only_known_kinds_of_examples_are_not_run():
    skipped = [(p.name, b.line, b.skip) for p in PAGES for b in parse_blocks(p.read_text()) if b.skip]
    unknown = [s for s in skipped if not str(s[2]).startswith(SKIP_KINDS)]
    assert not unknown, f"examples not run for other reasons: {unknown}"
    assert sum(len(runnable(p)) for p in PAGES) >= 40


def _commands(text: str) -> list[str]:
    return [b.code.strip() for b in parse_blocks(text) if b.lang == "bash" and b.code.startswith("pip install torch==")]


def test_the_two_commands_agree_in_readme_docs_and_ci():
    readme = _commands((ROOT / "README.md").read_text())
    assert len(readme) == 2 and "sb3-sac-ext train" in readme[0] and "sphinx-build -W" in readme[1]
    assert _commands((ROOT / "docs" / "install.md").read_text())[:2] == readme
    assert readme[1] in (ROOT / ".ci" / "run").read_text().splitlines()


class _PythonSession:
    def __init__(self, cwd: Path, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, str(TESTS / "_docs_runner.py")],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, code: str, name: str) -> tuple[str | None, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"code": code, "name": name}) + "\n")
        self.process.stdin.flush()
        output = []
        for line in self.process.stdout:
            if line.startswith(MARKER):
                return json.loads(line[len(MARKER) :])["error"], "".join(output)
            output.append(line)
        return f"the Python session ended (exit status {self.process.wait()})", "".join(output)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _hub_server(tmp_path: Path, env: dict[str, str]):
    import huggingface_hub
    from hub_test_server import HubTestServer
    from stable_baselines3 import SAC as SB3SAC

    server = HubTestServer(tokens=(TOKEN,))
    server.start()
    env.update(HF_ENDPOINT=server.endpoint, HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf_home"))
    # A repository as Stable-Baselines3 users push them (huggingface_sb3's layout: a pickled SB3 zip)
    SB3SAC("MlpPolicy", "Pendulum-v1", seed=0).save(tmp_path / "sac-Pendulum-v1.zip")
    api = huggingface_hub.HfApi(endpoint=server.endpoint, token=TOKEN)
    api.create_repo("sb3/sac-Pendulum-v1")
    api.create_commit(
        "sb3/sac-Pendulum-v1",
        [huggingface_hub.CommitOperationAdd("sac-Pendulum-v1.zip", str(tmp_path / "sac-Pendulum-v1.zip"))],
        commit_message="SB3 upload",
    )
    (tmp_path / "sac-Pendulum-v1.zip").unlink()
    return server


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_examples_run(page: Path, tmp_path: Path, request):
    blocks = runnable(page)
    if not blocks:
        pytest.skip("no code examples on this page")
    text = page.read_text()
    work = tmp_path / "work"
    work.mkdir()
    for folder in ("hyperparams", "zoo_scripts", "benchmarks"):
        (work / folder).symlink_to(ROOT / folder)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import _docs_budget\n\n_docs_budget.install()\n")
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        SB3_SAC_EXT_DOCS_STEPS=str(STEPS),
        MPLBACKEND="Agg",
        OMP_NUM_THREADS="1",
        SDL_VIDEODRIVER="dummy",
    )
    substitutions: dict[str, str] = {}
    servers = []
    if "<your-user>" in text or "sb3/sac-Pendulum-v1" in text:
        servers.append(_hub_server(tmp_path, env))
        substitutions.update({"<your-user>": "me", "<user>": "me", "<commit sha>": "main"})
    if "postgresql://user:password@dbhost:5432/optuna" in text:
        substitutions["postgresql://user:password@dbhost:5432/optuna"] = request.getfixturevalue("postgres_url")
    if "sac_from_sb3.zip" in text:
        from stable_baselines3 import SAC as SB3SAC

        SB3SAC("MlpPolicy", "Pendulum-v1", seed=0).save(work / "sac_from_sb3.zip")

    session = None
    try:
        for block in blocks:
            code = block.code
            for placeholder, value in substitutions.items():
                code = code.replace(placeholder, value)
            left = PLACEHOLDER.findall(code) if block.lang == "bash" else []
            assert not left, f"{page.name}:{block.line}: placeholders without a test value: {left}"
            where = f"{page.relative_to(ROOT)}:{block.line}"
            if block.lang == "python":
                session = session or _PythonSession(work, env)
                error, output = session.run(code, where)
                assert error is None, f"{where}: the example failed\n{output}\n{error}"
            else:
                result = subprocess.run(
                    ["bash", "-e", "-c", SHELL_PRELUDE + code],
                    cwd=work,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                assert result.returncode == 0, (
                    f"{where}: the commands failed (exit status {result.returncode})\n{result.stdout[-4000:]}\n"
                    f"{result.stderr[-4000:]}"
                )
    finally:
        if session is not None:
            session.close()
        for server in servers:
            server.stop()
