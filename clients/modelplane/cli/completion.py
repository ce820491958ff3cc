"""Shell completion scripts, generated from the argparse parser itself, so
they know every command, option and value the CLI knows.

    source <(modelplane completion bash)          # ~/.bashrc
    source <(modelplane completion zsh)           # ~/.zshrc (zsh's bashcompinit)
    modelplane completion fish > ~/.config/fish/completions/modelplane.fish

Completed: commands and subcommands, options (after "-"), the values of
options and arguments with a fixed set (provider types, contexts, roles,
on/off, output formats) and file paths for the file options. Nothing calls
the servers: completion is instant and needs no token.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Final

SHELLS: Final = ("bash", "zsh", "fish")
FILES: Final = "@files"  # an argument's `complete`: the value is a path
HELP: Final = __doc__.split("\n\n", 1)[1] if __doc__ else ""


@dataclass
class Node:
    """One command level: its path of command words and what may follow."""

    path: str
    commands: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    value_options: list[str] = field(default_factory=list)  # options that take a value
    values: dict[str, list[str] | str] = field(default_factory=dict)  # option or "#N" (Nth argument) -> words


def _values(action: argparse.Action) -> list[str] | str | None:
    complete: Any = getattr(action, "complete", None)
    if complete is not None:
        return complete if isinstance(complete, str) else [str(v) for v in complete]
    return [str(c) for c in action.choices] if action.choices else None


def walk(parser: argparse.ArgumentParser, path: str = "") -> list[Node]:
    node = Node(path)
    nodes = [node]
    position = 0
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                node.commands.append(name)
                nodes += walk(sub, f"{path} {name}".strip())
            continue
        values = _values(action)
        if action.option_strings:
            node.options += action.option_strings
            if action.nargs != 0:
                node.value_options += action.option_strings
                if values is not None:
                    node.values.update({o: values for o in action.option_strings})
        else:
            position += 1
            if values is not None:
                node.values[f"#{position}"] = values
    return nodes


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    nodes = walk(parser)
    prog = parser.prog
    if shell == "fish":
        return _fish(prog, nodes)
    body = _bash(prog, nodes)
    if shell == "zsh":
        return (f"# {prog} completion for zsh: source <({prog} completion zsh)\n"
                "autoload -U +X bashcompinit && bashcompinit\n" + body)
    return f"# {prog} completion for bash: source <({prog} completion bash)\n" + body


def _words(values: list[str] | str) -> str:
    return values if isinstance(values, str) else " ".join(values)


def _case(fn: str, arms: list[tuple[str, str]]) -> str:
    lines = [f"{fn}() {{", '    case "$1" in']
    lines += [f'        "{key}") echo "{words}";;' for key, words in arms if words]
    return "\n".join([*lines, "    esac", "}"])


def _bash(prog: str, nodes: list[Node]) -> str:
    fn = "_" + prog.replace("-", "_")
    tables = "\n".join([
        _case(f"{fn}_cmds", [(n.path, " ".join(n.commands)) for n in nodes]),
        _case(f"{fn}_opts", [(n.path, " ".join(n.options)) for n in nodes]),
        _case(f"{fn}_valopts", [(n.path, " ".join(n.value_options)) for n in nodes]),
        _case(f"{fn}_values", [(f"{n.path}:{k}", _words(v)) for n in nodes for k, v in n.values.items()]),
    ])
    return tables + f'''
{fn}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" path="" w i skip=0 npos=0 key="" values
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        if [ "$skip" = 1 ]; then skip=0; continue; fi
        case "$w" in
            --*=*) ;;
            -*) case " $({fn}_valopts "$path") " in *" $w "*) skip=1;; esac ;;
            *) case " $({fn}_cmds "$path") " in
                   *" $w "*) path="${{path:+$path }}$w"; npos=0;;
                   *) npos=$((npos + 1));;
               esac ;;
        esac
    done
    if [ "$skip" = 1 ]; then
        values="$({fn}_values "$path:${{COMP_WORDS[COMP_CWORD-1]}}")"
    elif [[ "$cur" == -* ]]; then
        values="$({fn}_opts "$path")"
    else
        values="$({fn}_cmds "$path")"
        [ -n "$values" ] || values="$({fn}_values "$path:#$((npos + 1))")"
    fi
    if [ "$values" = "{FILES}" ]; then
        COMPREPLY=($(compgen -f -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$values" -- "$cur"))
    fi
}}
complete -o bashdefault -F {fn} {prog}
'''


def _fish_switch(fn: str, arms: list[tuple[str, list[str]]]) -> str:
    lines = [f"function {fn}", "    switch \"$argv[1]\""]
    for key, words in arms:
        if words:
            lines += [f"        case '{key}'", f"            printf '%s\\n' {' '.join(words)}"]
    return "\n".join([*lines, "    end", "end"])


def _fish(prog: str, nodes: list[Node]) -> str:
    fn = "__" + prog.replace("-", "_")
    out = [f"# {prog} completion for fish: {prog} completion fish > ~/.config/fish/completions/{prog}.fish",
           _fish_switch(f"{fn}_cmds", [(n.path, n.commands) for n in nodes]),
           _fish_switch(f"{fn}_valopts", [(n.path, n.value_options) for n in nodes]),
           f"""function {fn}_path
    set -l path ''
    set -l skip 0
    for w in (commandline -opc)[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $w
            case '--*=*'
            case '-*'
                contains -- $w ({fn}_valopts "$path"); and set skip 1
            case '*'
                contains -- $w ({fn}_cmds "$path"); and set path (string trim -- "$path $w")
        end
    end
    echo $path
end
function {fn}_at
    set -l path ({fn}_path)
    test "$path" = "$argv[1]"
end
function {fn}_arg
    # the Nth argument (not command, not option) at this command
    set -l path ({fn}_path)
    test "$path" = "$argv[1]"; or return 1
    set -l n 0
    set -l skip 0
    set -l seen ''
    for w in (commandline -opc)[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $w
            case '--*=*'
            case '-*'
                contains -- $w ({fn}_valopts "$seen"); and set skip 1
            case '*'
                if contains -- $w ({fn}_cmds "$seen")
                    set seen (string trim -- "$seen $w")
                    set n 0
                else
                    set n (math $n + 1)
                end
        end
    end
    test (math $n + 1) = $argv[2]
end
complete -c {prog} -f"""]
    for n in nodes:
        at = f"-n '{fn}_at \"{n.path}\"'"
        if n.commands:
            out.append(f"complete -c {prog} {at} -a '{' '.join(n.commands)}'")
        for option in n.options:
            if not option.startswith("--") and len(option) != 2:
                continue
            flag = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
            values = n.values.get(option)
            if values == FILES:
                out.append(f"complete -c {prog} {at} {flag} -r -F")
            elif values:
                out.append(f"complete -c {prog} {at} {flag} -x -a '{_words(values)}'")
            elif option in n.value_options:
                out.append(f"complete -c {prog} {at} {flag} -x")
            else:
                out.append(f"complete -c {prog} {at} {flag}")
        for key, values in n.values.items():
            if key.startswith("#") and values != FILES:
                out.append(f"complete -c {prog} -n '{fn}_arg \"{n.path}\" {key[1:]}' -a '{_words(values)}'")
    return "\n".join(out) + "\n"
