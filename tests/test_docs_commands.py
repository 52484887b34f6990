"""Every command in README.md and docs/*.md is a command that exists, with flags it takes, naming files that exist;
every link between the pages and every picture they show exists. (The commands' behaviour is tested where each
command is; this catches a page that drifts from the code: a renamed flag, a moved option file, a dead link.)"""
import glob
import os.path as osp
import re
import shlex

import pytest

from promptir_basicsr.cli import subcommands

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGES = [osp.join(REPO, 'README.md')] + sorted(glob.glob(osp.join(REPO, 'docs', '*.md')))
# files a page names that a user makes (weights, their photos, run outputs), not the repository
USER_FILES = re.compile(r'^(experiments|results|datasets|weights|photos|pretrained|tb_logger)/|\.(pth|ckpt|onnx|pt|'
                        r'safetensors|png|jpg)$|^(net|model|All|deraining|promptir|adair5d)\b|<')


def _blocks(text):
    return re.findall(r'```bash\n(.*?)```', text, re.S)


def _commands(block):
    """Each command of a bash block, shell variables of the block expanded (``F="..."``, ``for q in ...; do``)."""
    variables, loop, commands = {}, None, []
    for line in block.replace('\\\n', ' ').splitlines():
        line = line.split('  #')[0].strip()
        if not line or line.startswith('#'):
            continue
        assignment = re.match(r'^(\w+)="(.*)"$', line) or re.match(r'^(\w+)=(\S+)$', line)
        if assignment:
            variables[assignment.group(1)] = assignment.group(2)
            continue
        start = re.match(r'^for (\w+) in (.*); do$', line)
        if start:
            loop = (start.group(1), start.group(2).split())
            continue
        if line == 'done':
            loop = None
            continue
        for value in (loop[1] if loop else [None]):
            expanded = line
            if loop:
                expanded = expanded.replace(f'${loop[0]}', value)
            for name, text in variables.items():
                expanded = expanded.replace(f'${name}', text)
            commands.append(expanded)
    return commands


def _page_commands():
    found = []
    for page in PAGES:
        for block in _blocks(open(page, encoding='utf-8').read()):
            for command in _commands(block):
                found.append((osp.relpath(page, REPO), command))
    return found


COMMANDS = _page_commands()


def test_the_pages_have_commands():
    assert len([c for c in COMMANDS if 'basicsr ' in c[1]]) > 40


@pytest.mark.parametrize('page, command', [c for c in COMMANDS if re.search(r'(^|\s|\))basicsr\s', c[1])],
                         ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_basicsr_commands_parse(page, command):
    words = shlex.split(command.replace('$(which basicsr)', 'basicsr'))
    words = words[words.index('basicsr') + 1:]
    found = subcommands()
    assert words[0] in found, f'{page}: `basicsr {words[0]}` is no subcommand'
    args = found[words[0]].build_parser(f'basicsr {words[0]}').parse_args(words[1:])  # exits on an unknown flag
    for value in words[1:]:
        if value.startswith(('options/', 'scripts/')) and not USER_FILES.search(value):
            assert osp.exists(osp.join(REPO, value)), f'{page}: {value} does not exist'
    assert args is not None


@pytest.mark.parametrize('page, command', [c for c in COMMANDS if c[1].startswith('python scripts/')],
                         ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_scripts_named_by_the_pages_exist(page, command):
    script = shlex.split(command)[1]
    assert osp.isfile(osp.join(REPO, script)), f'{page}: {script} does not exist'


@pytest.mark.parametrize('page', PAGES, ids=lambda p: osp.relpath(p, REPO))
def test_links_and_pictures_exist(page):
    text = open(page, encoding='utf-8').read()
    folder = osp.dirname(page)
    for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', text):
        if target.startswith(('http://', 'https://')):
            continue
        assert osp.exists(osp.normpath(osp.join(folder, target))), f'{osp.relpath(page, REPO)}: {target} is missing'
    for path in re.findall(r'`((?:options|scripts|promptir_basicsr|tests)/[\w/.-]+\.(?:yml|py))`', text):
        assert osp.exists(osp.join(REPO, path)), f'{osp.relpath(page, REPO)}: {path} does not exist'


def test_readme_is_the_front_door():
    lines = open(osp.join(REPO, 'README.md'), encoding='utf-8').read().splitlines()
    assert len(lines) <= 250
