"""Workflow variables in JSONPath states, as AWS Step Functions evaluates them.

moto 5.2.5's interpreter (a port of LocalStack's) parses `Assign` in JSONPath states and
stores the variables, but:

1. it reads every variable reference (`"x.$": "$count"`, `"Variable": "$stack.StackStatus"`,
   `"SecondsPath": "$bake.interval_seconds"`, `States.Format('{}', $failure)`, ...) through
   a JSONata evaluator it does not ship (LocalStack runs JSONata on a JVM), so any read fails
   with States.Runtime "'NoneType' object is not callable". Here a JSONPath-mode reference
   `$name` optionally followed by a JSONPath (`.member`, `[index]`) is resolved in Python: the
   variable's value (inner scope first, as in a Map iteration), then the path into it, with
   the JSONPath rules of every other path (`extract_json`). A missing variable or member is
   an error, which a Choice rule's `IsPresent` reads as "not present", as for `$.paths`;
2. it drops the `Assign` of a JSONPath choice rule (`{"Variable": ..., "StringEquals": ...,
   "Assign": {...}, "Next": ...}`; kept for And/Or/Not rules), and evaluates a kept one's
   `$.paths` against the rule's true/false instead of the state's input. AWS assigns it,
   from the state's input, when the rule matches (asl-validator's ASL schema allows Assign
   on every top-level choice rule);
3. a choice rule comparing with a variable (`"NumericLessThanPath": "$count"`) compared the
   two the wrong way round (`$count < Variable`), which only `...EqualsPath` survives;
4. it applies a Choice state's own `Assign` (the Default's) whenever the next state is the
   Default's, also when a rule that matched names the same state, after the rule's Assign.
   AWS applies it only when no rule matched (LocalStack's fix: localstack#12301).

docs/local-stack.md ("Where the local stack differs from AWS") and docs/state-machine.md
("Emulator deviations") list these.
"""

import copy
import re

_REFERENCE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)(.*)$", re.DOTALL)


def patch():
    _patch_variable_reads()
    _patch_path_comparison_to_variable()
    _patch_choice_rule_assign()
    _patch_choice_default_assign()


def _patch_variable_reads():
    from moto.stepfunctions.parser.asl.component.common.query_language import QueryLanguageMode
    from moto.stepfunctions.parser.asl.component.common.string import string_expression
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    sample = string_expression.StringVariableSample
    original = sample._eval_body

    def _eval_body(self, env):
        if self.query_language_mode != QueryLanguageMode.JSONPath:
            return original(self, env)
        match = _REFERENCE.match(self.expression.strip())
        if match is None:
            raise ValueError(f"not a variable reference: {self.expression!r}")
        name, path = match.groups()
        value = env.variable_store.get(name)  # NoSuchVariable if never assigned
        if path:
            value = extract_json("$" + path, value)  # NoSuchJsonPathError if absent
        env.stack.append(copy.deepcopy(value))

    sample._eval_body = _eval_body


def _patch_path_comparison_to_variable():
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.comparison_func import (
        ComparisonFuncStringVariableSample,
    )

    # The operators compare the value on top of the stack (the rule's Variable) with the
    # path ("$") taken into the value beneath it: put the sampled variable beneath.
    def _eval_body(self, env):
        variable = env.stack.pop()
        self.string_variable_sample.eval(env=env)
        env.stack.append(variable)
        super(ComparisonFuncStringVariableSample, self)._eval_body(env=env)
        del env.stack[-2]

    ComparisonFuncStringVariableSample._eval_body = _eval_body


def _patch_choice_rule_assign():
    from moto.stepfunctions.parser.asl.component.common.assign.assign_decl import AssignDecl
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    original = Preprocessor.visitChoice_rule_comparison_variable

    def visit(self, ctx):
        rule = original(self, ctx)
        if rule.assign is None:
            for child in ctx.children:
                component = self.visit(child)
                if isinstance(component, AssignDecl):
                    rule.assign = component
        return rule

    Preprocessor.visitChoice_rule_comparison_variable = visit

    # A rule's Assign reads the state's input ($), which lies under the rule's verdict on
    # the stack (moto evaluated $.paths and intrinsics' $.arguments against the verdict).
    from moto.stepfunctions.parser.asl.component.state.choice.choice_rule import ChoiceRule

    def _eval_body(self, env):
        self.comparison.eval(env)
        if env.stack[-1] is not True:
            return
        if self.assign:
            verdict = env.stack.pop()
            try:
                self.assign.eval(env=env)
            finally:
                env.stack.append(verdict)
        if self.output:
            self.output.eval(env=env)

    ChoiceRule._eval_body = _eval_body


def _patch_choice_default_assign():
    from moto.stepfunctions.parser.asl.component.state.choice.state_choice import StateChoice

    # As LocalStack's fix: _eval_state leaves whether a rule matched under the next state's
    # name, and _eval_state_output applies the state's own Assign only when none did.
    def _eval_state(self, env):
        for rule in self.choices_decl.rules:
            rule.eval(env)
            if env.stack.pop() is True:
                if not rule.next_stmt:
                    raise RuntimeError(f"Missing Next in a choice rule of state '{self.name}'.")
                env.stack.append(True)
                env.stack.append(rule.next_stmt.name)
                return
        if self.default_state is None:
            raise RuntimeError(f"No branching option reached in state '{self.name}'.")
        env.stack.append(False)
        env.stack.append(self.default_state.state_name)

    def _eval_state_output(self, env):
        next_state_name = env.stack.pop()
        rule_matched = env.stack.pop()
        if not rule_matched:
            if self.assign_decl:
                self.assign_decl.eval(env=env)
            if self.output:
                self.output.eval(env=env)
        if self._is_language_query_jsonpath():
            if self.output_path:
                self.output_path.eval(env=env)
            else:
                env.states.reset(input_value=env.stack.pop())
        env.next_state_name = next_state_name

    StateChoice._eval_state = _eval_state
    StateChoice._eval_state_output = _eval_state_output
