"""Every model option, defined once.

The GetModelOptionsSchema RPC serves these definitions and modelplane_server.domain.validation
checks models against them, so a UI form and the server can never disagree
about a field's kind, range or allowed values.

Paths are named the way a Model request names them: "options.<field>",
"pricing.<field>", or "<options family>.<field>" where the family is the
Model oneof field (anthropic, openai, google, openrouter, vercel).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Mapping, NamedTuple

from modelplane_server.domain.types import OPTIONS_FAMILY, ProviderType

OptionValue = bool | int | float | str


class OptionKind(enum.StrEnum):
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ENUM = "enum"


@dataclass(frozen=True)
class OptionDef:
    path: str
    display_name: str
    description: str
    kind: OptionKind
    enum_values: tuple[str, ...] = ()
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    default: OptionValue | None = None

    @property
    def group(self) -> str:
        """"options", "pricing" or the options family."""
        return self.path.split(".", 1)[0]

    @property
    def field_name(self) -> str:
        return self.path.split(".", 1)[1]

    @property
    def default_json(self) -> str:
        """The default as JSON, or "" when there is none (the proto's default_json)."""
        return "" if self.default is None else json.dumps(self.default)


def _integer(path: str, name: str, description: str, *, minimum: float | None = None,
             maximum: float | None = None, default: int | None = None) -> OptionDef:
    return OptionDef(path, name, description, OptionKind.INTEGER,
                     minimum=minimum, maximum=maximum, default=default)


def _number(path: str, name: str, description: str, *, minimum: float | None = None,
            maximum: float | None = None) -> OptionDef:
    return OptionDef(path, name, description, OptionKind.NUMBER, minimum=minimum, maximum=maximum)


def _boolean(path: str, name: str, description: str) -> OptionDef:
    return OptionDef(path, name, description, OptionKind.BOOLEAN)


def _enum(path: str, name: str, description: str, values: tuple[str, ...],
          default: str | None = None) -> OptionDef:
    return OptionDef(path, name, description, OptionKind.ENUM, enum_values=values, default=default)


GENERATION_OPTIONS: tuple[OptionDef, ...] = (
    _integer("options.compression_threshold", "Compression Threshold",
             "Percentage (0-100) of context usage at which the agent compresses older messages into a summary.",
             minimum=0, maximum=100, default=70),
    _integer("options.max_output_tokens", "Max Output Tokens",
             "Maximum tokens generated per model response.", minimum=1),
    _number("options.temperature", "Temperature",
            "Controls randomness; lower values produce more deterministic output.", minimum=0, maximum=2),
    _number("options.top_p", "Top P", "Nucleus sampling threshold.", minimum=0, maximum=1),
    _integer("options.top_k", "Top K", "Limits token selection to the top K candidates.", minimum=1),
    _number("options.presence_penalty", "Presence Penalty",
            "Penalizes tokens that have already appeared in the conversation.", minimum=-2, maximum=2),
    _number("options.frequency_penalty", "Frequency Penalty",
            "Penalizes tokens in proportion to how often they have appeared.", minimum=-2, maximum=2),
)

PRICING_OPTIONS: tuple[OptionDef, ...] = (
    _number("pricing.input_per_mtok", "Input Price",
            "Optional USD price per 1M input tokens.", minimum=0),
    _number("pricing.output_per_mtok", "Output Price",
            "Optional USD price per 1M output tokens.", minimum=0),
    _number("pricing.cache_read_per_mtok", "Cache Read Price",
            "Optional USD price per 1M cache read tokens.", minimum=0),
    _number("pricing.cache_write_per_mtok", "Cache Write Price",
            "Optional USD price per 1M cache creation/write tokens.", minimum=0),
)

GENERAL_OPTIONS: tuple[OptionDef, ...] = GENERATION_OPTIONS + PRICING_OPTIONS

# Google documents -1 as "dynamic" and 0 as "off"; 32768 is the widest
# per-model range it publishes (Gemini 2.5 Pro). Narrower per-model ranges are
# left to the upstream to enforce.
GOOGLE_MAX_THINKING_BUDGET = 32768

# Anthropic's documented minimum for budget_tokens.
ANTHROPIC_MIN_THINKING_BUDGET = 1024


# The values each vendor's current SDK or API reference lists (openai
# ReasoningEffort, anthropic ThinkingConfigParam / OutputConfigParam,
# google-genai ThinkingLevel, OpenRouter's and Vercel's reasoning.effort);
# tests/unit/test_options_against_sdks.py compares them with the SDKs.
OPENAI_REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
ANTHROPIC_EFFORTS = ("low", "medium", "high", "xhigh", "max")
# Anthropic's thinking.type values but "enabled", which a budget means.
ANTHROPIC_THINKING_TYPES = ("adaptive", "disabled", "between_tools")
GOOGLE_THINKING_LEVELS = ("minimal", "low", "medium", "high", "xhigh")
GATEWAY_REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


def _reasoning_options(family: str, effort_description: str) -> tuple[OptionDef, ...]:
    # openrouter and vercel share one proto message, ReasoningOptions.
    return (
        _boolean(f"{family}.reasoning_enabled", "Reasoning Enabled", "Enable extended reasoning mode."),
        _enum(f"{family}.reasoning_effort", "Reasoning Effort", effort_description, GATEWAY_REASONING_EFFORTS),
    )


FAMILY_OPTIONS: Mapping[str, tuple[OptionDef, ...]] = {
    "anthropic": (
        _integer("anthropic.thinking_budget_tokens", "Thinking Budget Tokens",
                 "Maximum tokens allocated for extended thinking (this turns thinking on); "
                 "must be below Max Output Tokens.",
                 minimum=ANTHROPIC_MIN_THINKING_BUDGET),
        _enum("anthropic.effort", "Effort", "Thinking effort level.", ANTHROPIC_EFFORTS),
        _enum("anthropic.thinking", "Thinking",
              "Thinking mode instead of a budget: adaptive (the model decides how much to think, also between "
              "tool calls), disabled or between_tools; unset means the budget decides, else the model's default.",
              ANTHROPIC_THINKING_TYPES),
    ),
    "openai": (
        _enum("openai.reasoning_effort", "Reasoning Effort",
              "How much effort the model spends reasoning (not every model takes every value).",
              OPENAI_REASONING_EFFORTS),
        _integer("openai.max_completion_tokens", "Max Completion Tokens",
                 "Cap on completion tokens for reasoning models.", minimum=1),
        _boolean("openai.parallel_tool_calls", "Parallel Tool Calls",
                 "Whether the model can call multiple tools at once."),
        _enum("openai.api", "API", "Which OpenAI wire API requests use.",
              ("responses", "chat_completions"), default="responses"),
    ),
    "google": (
        _integer("google.thinking_budget", "Thinking Budget",
                 "Maximum tokens for the model's internal reasoning (0 turns it off, -1 lets the model decide).",
                 minimum=-1, maximum=GOOGLE_MAX_THINKING_BUDGET),
        _boolean("google.include_thoughts", "Include Thoughts",
                 "Whether to include thinking traces in the response."),
        _enum("google.thinking_level", "Thinking Level",
              "How much Gemini 3 models think; not together with Thinking Budget.", GOOGLE_THINKING_LEVELS),
    ),
    "openrouter": _reasoning_options("openrouter", "Reasoning effort level."),
    "vercel": _reasoning_options("vercel", "Reasoning effort level."),
}

ALL_OPTIONS: tuple[OptionDef, ...] = GENERAL_OPTIONS + tuple(
    d for defs in FAMILY_OPTIONS.values() for d in defs
)
OPTIONS_BY_PATH: Mapping[str, OptionDef] = {d.path: d for d in ALL_OPTIONS}


class OptionsSchema(NamedTuple):
    family: str | None  # None: the type takes no provider-specific options
    general: list[OptionDef]
    provider_specific: list[OptionDef]


def schema_for(provider_type: ProviderType) -> OptionsSchema:
    """The options a model of provider_type takes (openai-compatible has no family)."""
    family = OPTIONS_FAMILY.get(provider_type)
    specific = list(FAMILY_OPTIONS[family]) if family is not None else []
    return OptionsSchema(family, list(GENERAL_OPTIONS), specific)
