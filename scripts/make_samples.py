"""Write data/samples/: small, deterministic rows in each dataset's exact upstream schema, for the offline demo.

    python scripts/make_samples.py [--out data/samples]

Every row is written by this script (no upstream row is copied). Each file mixes clean rows with the kinds of dirt
the real datasets carry (SCHEMAS.md): single-quoted Glaive arguments, text before <functioncall>, undeclared
functions, Python-dict Hermes calls, empty hh-rlhf replies, diverging prefixes, diffs over 8,000 characters, bad
JSON, unknown roles. `tui_data_prep.py --source local --local-dir data/samples --quick-test` formats them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.data_prep import local_filename

Row = dict[str, Any]

# ------------------------------------------------------------------------------------------------ tool calling

FUNCTIONS = {
    "get_weather": ({"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                     "required": ["city"]}, "Get the current weather for a city"),
    "convert_currency": ({"type": "object", "properties": {
        "amount": {"type": "number", "description": "Amount to convert"},
        "from": {"type": "string", "description": "Source currency code"},
        "to": {"type": "string", "description": "Target currency code"}}, "required": ["amount", "from", "to"]},
        "Convert an amount between two currencies"),
    "calculate_bmi": ({"type": "object", "properties": {
        "weight": {"type": "number", "description": "Weight in kilograms"},
        "height": {"type": "number", "description": "Height in meters"}}, "required": ["weight", "height"]},
        "Calculate the body mass index"),
    "search_recipes": ({"type": "object", "properties": {
        "ingredients": {"type": "array", "items": {"type": "string"}, "description": "Ingredients to use"}},
        "required": ["ingredients"]}, "Search recipes by ingredients"),
    "get_random_fact": ({}, "Get a random fact"),
}

GLAIVE_LEAD = "SYSTEM: You are a helpful assistant with access to the following functions. Use them if required -\n"
GLAIVE_NO_FUNCTIONS = "SYSTEM: You are a helpful assistant, with no access to external functions.\n\n"

# (function, user request, arguments, function response, final answer)
GLAIVE_CALLS = [
    ("get_weather", "What's the weather like in Lisbon right now?", {"city": "Lisbon"},
     {"temperature": 21, "condition": "sunny"}, "It is sunny in Lisbon, 21 degrees."),
    ("get_weather", "Is it raining in Oslo?", {"city": "Oslo"}, {"temperature": 7, "condition": "rain"},
     "Yes, it is raining in Oslo and it is 7 degrees."),
    ("convert_currency", "How much is 250 US dollars in euros?", {"amount": 250, "from": "USD", "to": "EUR"},
     {"converted_amount": 230.5, "rate": 0.922}, "250 USD is about 230.50 EUR at a rate of 0.922."),
    ("convert_currency", "Convert 1000 yen to pounds please.", {"amount": 1000, "from": "JPY", "to": "GBP"},
     {"converted_amount": 5.3, "rate": 0.0053}, "1000 JPY is about 5.30 GBP."),
    ("calculate_bmi", "I weigh 70 kg and I am 1.75 m tall. What's my BMI?", {"weight": 70, "height": 1.75},
     {"bmi": 22.86}, "Your BMI is 22.86, which is in the normal range."),
    ("calculate_bmi", "My weight is 92 kilos, height 1.80 m. BMI?", {"weight": 92, "height": 1.8},
     {"bmi": 28.4}, "Your BMI is 28.4, which counts as overweight."),
    ("search_recipes", "I have chicken and rice. What can I cook?", {"ingredients": ["chicken", "rice"]},
     {"recipes": ["Chicken fried rice", "Arroz con pollo"]}, "You could make chicken fried rice or arroz con pollo."),
    ("search_recipes", "Any recipe with tomatoes, basil and pasta?", {"ingredients": ["tomatoes", "basil", "pasta"]},
     {"recipes": ["Pasta al pomodoro"]}, "Try pasta al pomodoro: tomatoes, basil and pasta are all it needs."),
    ("get_random_fact", "Tell me a random fact.", {}, {"fact": "Octopuses have three hearts."},
     "Here's one: octopuses have three hearts."),
]


def glaive_system(*names: str) -> str:
    blocks = [json.dumps({"name": n, "description": FUNCTIONS[n][1], "parameters": FUNCTIONS[n][0]}, indent=4)
              for n in names]
    return GLAIVE_LEAD + "\n\n".join(blocks) + "\n"


def glaive_call(name: str, arguments: dict[str, Any], quote: bool = True) -> str:
    args = f"'{json.dumps(arguments)}'" if quote else json.dumps(arguments)
    return f'ASSISTANT: <functioncall> {{"name": "{name}", "arguments": {args}}} <|endoftext|>'


def glaive_chat(*turns: str) -> str:
    return "\n\n\n".join(turns) + "\n\n\n"


def glaive_rows() -> list[Row]:
    rows = []
    for i, (name, request, args, response, answer) in enumerate(GLAIVE_CALLS):
        other = "get_random_fact" if name != "get_random_fact" else "get_weather"
        rows.append({"system": glaive_system(name, other), "chat": glaive_chat(
            f"USER: {request}", glaive_call(name, args, quote=i % 4 != 3),  # every 4th: arguments as a bare object
            f"FUNCTION RESPONSE: {json.dumps(response)}", f"ASSISTANT: {answer} <|endoftext|>")})
    rows.append({"system": glaive_system("get_weather"), "chat": glaive_chat(
        "USER: Can you book me a table for two tonight?",
        "ASSISTANT: I'm sorry, I can't book tables. I can only look up the weather. <|endoftext|>")})
    rows.append({"system": GLAIVE_NO_FUNCTIONS, "chat": "USER: Give me a synonym for happy.\n\nASSISTANT: Joyful."
                 " <|endoftext|>\n\nUSER: And one for sad?\n\nASSISTANT: Melancholy. <|endoftext|>"})
    # Dirt, kept: text before <functioncall>; \' inside single-quoted arguments; ends on a USER turn (trimmed).
    rows.append({"system": glaive_system("get_weather"), "chat": glaive_chat(
        "USER: Weather in Rome?",
        'ASSISTANT: Let me check that for you.\n<functioncall> {"name": "get_weather", "arguments": \'{"city":'
        ' "Rome"}\'} <|endoftext|>', 'FUNCTION RESPONSE: {"temperature": 25, "condition": "clear"}',
        "ASSISTANT: Rome is clear and 25 degrees. <|endoftext|>")})
    rows.append({"system": glaive_system("search_recipes"), "chat": glaive_chat(
        "USER: Something with shepherd's pie ingredients?",
        'ASSISTANT: <functioncall> {"name": "search_recipes", "arguments": \'{"ingredients": ["lamb",'
        ' "shepherd\\\'s herbs"]}\'} <|endoftext|>', 'FUNCTION RESPONSE: {"recipes": ["Shepherd\'s pie"]}',
        "ASSISTANT: Shepherd's pie it is. <|endoftext|>")})
    rows.append({"system": glaive_system("get_weather"), "chat": glaive_chat(
        "USER: Weather in Paris?", glaive_call("get_weather", {"city": "Paris"}),
        'FUNCTION RESPONSE: {"temperature": 18, "condition": "cloudy"}',
        "ASSISTANT: Paris is cloudy, 18 degrees. <|endoftext|>", "USER: Thanks!")})
    # Dirt, skipped: undeclared function; arguments not JSON; Infinity; "AI to=" syntax; stray <|endoftext|>;
    # a name declared twice with two definitions; two ASSISTANT turns in a row.
    rows.append({"system": glaive_system("get_weather"), "chat": glaive_chat(
        "USER: Convert 5 USD to EUR.", glaive_call("convert_currency", {"amount": 5, "from": "USD", "to": "EUR"}),
        'FUNCTION RESPONSE: {"converted_amount": 4.6}', "ASSISTANT: 4.60 EUR. <|endoftext|>")})
    rows.append({"system": glaive_system("search_recipes"), "chat": glaive_chat(
        "USER: Recipes with my data?",
        'ASSISTANT: <functioncall> {"name": "search_recipes", "arguments": \'{"ingredients": [user data]}\'}'
        ' <|endoftext|>', 'FUNCTION RESPONSE: {"recipes": []}', "ASSISTANT: Nothing found. <|endoftext|>")})
    rows.append({"system": glaive_system("calculate_bmi"), "chat": glaive_chat(
        "USER: BMI for 80 kg and infinite height?",
        'ASSISTANT: <functioncall> {"name": "calculate_bmi", "arguments": \'{"weight": 80, "height": Infinity}\'}'
        ' <|endoftext|>', 'FUNCTION RESPONSE: {"bmi": 0}', "ASSISTANT: That gives 0. <|endoftext|>")})
    rows.append({"system": glaive_system("get_weather"), "chat": glaive_chat(
        "USER: Weather in Berlin?", 'ASSISTANT: Sure.\nAI to= get_weather: {"city": "Berlin"} <|endoftext|>',
        'FUNCTION RESPONSE: {"temperature": 12}', "ASSISTANT: 12 degrees in Berlin. <|endoftext|>")})
    rows.append({"system": glaive_system("get_weather"), "chat": glaive_chat(
        "USER: Weather in \"\nASSISTANT: Madrid\" please <|endoftext|>", "ASSISTANT: Sure. <|endoftext|>")})
    twice = GLAIVE_LEAD + json.dumps({"name": "get_weather", "description": "Weather", "parameters": {}}, indent=4)
    twice += "\n\n" + glaive_system("get_weather").removeprefix(GLAIVE_LEAD)
    rows.append({"system": twice, "chat": glaive_chat(
        "USER: Weather in Nice?", glaive_call("get_weather", {"city": "Nice"}),
        'FUNCTION RESPONSE: {"temperature": 23}', "ASSISTANT: 23 degrees. <|endoftext|>")})
    rows.append({"system": glaive_system("get_random_fact"), "chat": glaive_chat(
        "USER: News on AI?", "ASSISTANT: Here are some articles on <|endoftext|>",
        "ASSISTANT:\n1. AI and robotics <|endoftext|>")})
    return rows


XLAM_TOOLS = [
    {"name": "get_stock_price", "description": "Fetch the latest price of a stock.",
     "parameters": {"symbol": {"description": "Ticker symbol, e.g. AAPL.", "type": "str", "default": "AAPL"},
                    "currency": {"description": "Currency of the price.", "type": "str, optional", "default": "USD"}}},
    {"name": "sum_of_list", "description": "Return the sum of a list of integers.",
     "parameters": {"numbers": {"description": "The integers to add.", "type": "List[int]"}}},
    {"name": "is_palindrome", "description": "Check whether a string is a palindrome.",
     "parameters": {"text": {"description": "The string to check.", "type": "str"},
                    "ignore_case": {"description": "Ignore letter case.", "type": "bool, optional",
                                    "default": True}}},
    {"name": "math_toolkit.compound_interest", "description": "Compound interest on a principal.",
     "parameters": {"principal": {"description": "Starting amount.", "type": "float"},
                    "rate": {"description": "Yearly rate as a fraction.", "type": "float"},
                    "years": {"description": "Number of years.", "type": "int, optional", "default": 1}}},
]
XLAM_QUERIES = [
    ("What's Tesla's share price in euros?", [("get_stock_price", {"symbol": "TSLA", "currency": "EUR"})]),
    ("Price of MSFT and of NVDA?", [("get_stock_price", {"symbol": "MSFT"}), ("get_stock_price", {"symbol": "NVDA"})]),
    ("Add up 3, 9, 27 and 81.", [("sum_of_list", {"numbers": [3, 9, 27, 81]})]),
    ("Is 'Racecar' a palindrome if case is ignored?", [("is_palindrome", {"text": "Racecar", "ignore_case": True})]),
    ("Is 'level' a palindrome, and what is 1+2+3?",
     [("is_palindrome", {"text": "level"}), ("sum_of_list", {"numbers": [1, 2, 3]})]),
    ("Interest on 1000 at 5% for 3 years?",
     [("math_toolkit.compound_interest", {"principal": 1000.0, "rate": 0.05, "years": 3})]),
    ("How much do 500 dollars grow at 2% in one year?",
     [("math_toolkit.compound_interest", {"principal": 500.0, "rate": 0.02})]),
    ("Sum 10 and 20, and check 'noon'.",
     [("sum_of_list", {"numbers": [10, 20]}), ("is_palindrome", {"text": "noon"})]),
    ("Apple's stock price?", [("get_stock_price", {"symbol": "AAPL"})]),
    ("Sum of the first five primes?", [("sum_of_list", {"numbers": [2, 3, 5, 7, 11]})]),
    ("Is 'Step on no pets' a palindrome?", [("is_palindrome", {"text": "Step on no pets", "ignore_case": True})]),
    ("AMD stock in GBP?", [("get_stock_price", {"symbol": "AMD", "currency": "GBP"})]),
]


def xlam_rows() -> list[Row]:
    rows = []
    for i, (query, calls) in enumerate(XLAM_QUERIES):
        tools = [XLAM_TOOLS[(i + k) % len(XLAM_TOOLS)] for k in range(3)]
        for name, _ in calls:
            if all(t["name"] != name for t in tools):
                tools.append(next(t for t in XLAM_TOOLS if t["name"] == name))
        rows.append({"id": i, "query": query, "answers": json.dumps([{"name": n, "arguments": a} for n, a in calls]),
                     "tools": json.dumps(tools)})
    # Dirt, skipped: answers cut off (not JSON); a call to a tool the row does not list; no answer at all.
    rows.append({"id": 100, "query": "Price of IBM?", "answers": '[{"name": "get_stock_price", "arguments": {"sym',
                 "tools": json.dumps(XLAM_TOOLS[:1])})
    rows.append({"id": 101, "query": "Weather in Rome?", "answers": json.dumps([{"name": "get_weather",
                 "arguments": {"city": "Rome"}}]), "tools": json.dumps(XLAM_TOOLS[:2])})
    rows.append({"id": 102, "query": "Sum nothing.", "answers": "[]", "tools": json.dumps(XLAM_TOOLS[1:2])})
    return rows


def hermes_tools_block(names: list[str], python_repr: bool) -> str:
    tools = [{"type": "function", "function": {"name": n, "description": FUNCTIONS[n][1],
                                                "parameters": FUNCTIONS[n][0] or {"type": "object",
                                                                                  "properties": {}}}}
             for n in names]
    return repr(tools) if python_repr else json.dumps(tools)


HERMES_SYSTEM = ("You are a function calling AI model. You are provided with function signatures within"
                 " <tools> </tools> XML tags. You may call one or more functions to assist with the user query."
                 " Don't make assumptions about what values to plug into functions.\n<tools>\n{tools}\n</tools>\n"
                 "For each function call"
                 " return a json object with function name and arguments within <tool_call> </tool_call> tags with"
                 " the following schema:\n<tool_call>\n{{'arguments': <args-dict>, 'name': <function-name>}}\n"
                 "</tool_call>\n")


def hermes_call(name: str, arguments: dict[str, Any], python_repr: bool = True) -> str:
    call = {"arguments": arguments, "name": name}
    return f"<tool_call>\n{repr(call) if python_repr else json.dumps(call)}\n</tool_call>\n"


def hermes_row(config: str, i: int, conversations: list[dict[str, str]], **extra: Any) -> Row:
    row = {"id": f"{config}-{i:04d}", "conversations": conversations, "category": "Samples",
           "subcategory": config, "task": "Function calling"}
    row.update(extra)
    return row


def hermes_function_rows(config: str, multi_turn: bool) -> list[Row]:
    rows = []
    for i, (name, request, args, response, answer) in enumerate(GLAIVE_CALLS[:4] if multi_turn else GLAIVE_CALLS[4:8]):
        conv = [{"from": "system", "value": HERMES_SYSTEM.format(tools=hermes_tools_block([name], i % 2 == 0))},
                {"from": "human", "value": request},
                {"from": "gpt", "value": hermes_call(name, args, python_repr=i % 2 == 0)}]
        if multi_turn:
            conv += [{"from": "tool", "value": f"<tool_response>\n{json.dumps({'name': name, 'content': response})}"
                                               "\n</tool_response>\n"},
                     {"from": "gpt", "value": answer}]
        rows.append(hermes_row(config, i, conv))
    bad_system = HERMES_SYSTEM.format(tools=hermes_tools_block(["get_weather"], True))
    # Dirt, skipped: the name inside "arguments" (card row afba1f0c's shape); an unknown role.
    rows.append(hermes_row(config, 90, [
        {"from": "system", "value": bad_system}, {"from": "human", "value": "Weather in Kyiv?"},
        {"from": "gpt",
         "value": '<tool_call>\\n{"arguments": {"city": "Kyiv", "name": "get_weather"}}\\n</tool_call>'}]))
    rows.append(hermes_row(config, 91, [
        {"from": "system", "value": bad_system}, {"from": "observer", "value": "Weather in Riga?"},
        {"from": "gpt", "value": hermes_call("get_weather", {"city": "Riga"})}]))
    return rows


def hermes_glaive_rows() -> list[Row]:
    rows = []
    for i, (name, request, args, response, answer) in enumerate(GLAIVE_CALLS[5:9]):
        rows.append(hermes_row("glaive_func_calling", i, [
            {"from": "system", "value": HERMES_SYSTEM.format(tools=hermes_tools_block([name, "get_weather"], True))},
            {"from": "human", "value": request}, {"from": "gpt", "value": hermes_call(name, args)},
            {"from": "tool", "value": f"<tool_response>\n{json.dumps({'name': name, 'content': response})}\n"
                                      "</tool_response>\n"},
            {"from": "gpt", "value": answer}]))
    return rows


JSON_SCHEMA_SYSTEM = ("You are a helpful assistant that answers in JSON. Here's the json schema you must adhere to:\n"
                      "<schema>\n{schema}\n</schema>\n")
JSON_MODE_ITEMS = [
    ({"title": "Book", "type": "object", "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
      "required": ["title", "year"]}, "Make a record for the book Dune, published in 1965.",
     {"title": "Dune", "year": 1965}),
    ({"title": "Task", "type": "object", "properties": {"name": {"type": "string"}, "done": {"type": "boolean"}},
      "required": ["name", "done"]}, "Record the finished task 'write tests'.", {"name": "write tests", "done": True}),
    ({"title": "Point", "type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
      "required": ["x", "y"]}, "The point is at x 2.5 and y -1.", {"x": 2.5, "y": -1}),
]


def hermes_json_rows(config: str) -> list[Row]:
    rows = []
    for i, (schema, request, answer) in enumerate(JSON_MODE_ITEMS):
        extra: dict[str, Any] = {"schema": json.dumps(schema)}
        if config == "json_mode_singleturn":
            extra["__index_level_0__"] = i  # some real rows carry this stray pandas column
        conv = [{"from": "system", "value": JSON_SCHEMA_SYSTEM.format(schema=repr(schema))},
                {"from": "human", "value": request}, {"from": "gpt", "value": json.dumps(answer)}]
        row = hermes_row(config, i, conv, **extra)
        del row["task"]  # json-mode rows have "schema" instead of "task"
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------- agents

MINT_SYSTEM = ("You are a helpful assistant assigned with the task of problem-solving. To achieve this, you will be"
               " using an interactive coding environment equipped with a variety of tool functions to assist you"
               " throughout the process.\n\nAt each turn, you should first provide your step-by-step thinking for"
               " solving the task. After that, you have two options:\n\n1) Interact with a Python programming"
               " environment and receive the corresponding output. Your code should be enclosed using \"<execute>\""
               " tag, for example: <execute> print(\"Hello World!\") </execute>.\n2) Directly provide a solution that"
               " adheres to the required format for the given task. Your solution should be enclosed using"
               " \"<solution>\" tag, for example: The answer is <solution> A </solution>.\n\nYou have 5 chances to"
               " interact with the environment or propose a solution. You can only propose a solution 2 times.\n\n"
               "Tool function available (already imported in <execute> environment):\n[1] wikipedia_search(query:"
               " str) -> str\nThe Wikipedia Search tool provides access to a vast collection of articles.")
CODEACT_TASKS = [
    ("What is the sum of all even numbers below 50?", "I will add the even numbers with a range.",
     "print(sum(range(0, 50, 2)))", "600", "The sum is <solution> 600 </solution>."),
    ("How many distinct prime factors does 360 have?", "Factor 360 with trial division.",
     "n, p, f = 360, 2, set()\nwhile n > 1:\n    while n % p == 0:\n        f.add(p)\n        n //= p\n    p += 1\n"
     "print(len(f))", "3", "360 has <solution> 3 </solution> distinct prime factors."),
    ("Reverse the string 'agent' and upper-case it.", "Slicing reverses it.", "print('agent'[::-1].upper())",
     "TNEGA", "The result is <solution> TNEGA </solution>."),
    ("What is 2 to the power 20?", "Compute it directly.", "print(2 ** 20)", "1048576",
     "<solution> 1048576 </solution>"),
    ("Count the vowels in 'trajectory'.", "Loop over the letters.", "print(sum(c in 'aeiou' for c in 'trajectory'))",
     "3", "There are <solution> 3 </solution> vowels."),
    ("Find the median of [7, 1, 4, 9, 3].", "Sort and take the middle.",
     "import statistics\nprint(statistics.median([7, 1, 4, 9, 3]))", "4", "The median is <solution> 4 </solution>."),
]


def observation(output: str, steps_left: int) -> str:
    return f"Observation:\n{output}\nYou have {steps_left} steps left and 2 chances to propose solution left."


def code_act_rows() -> list[Row]:
    rows = []
    for i, (task, thought, code, output, solution) in enumerate(CODEACT_TASKS):
        conv = [{"role": "system", "content": MINT_SYSTEM}, {"role": "user", "content": f"Task:\n{task}"},
                {"role": "assistant", "content": f"{thought}\n<execute>\n{code}\n</execute>"},
                {"role": "user", "content": observation(output, 4)}]
        if i == 1:  # a failing first try, then a fix: an error observation and a retry
            conv[2:2] = [{"role": "assistant", "content": "Use sympy.\n<execute>\nimport sympy\n"
                                                          "print(len(sympy.factorint(360)))\n</execute>"},
                         {"role": "user", "content": observation("ModuleNotFoundError: No module named 'sympy'", 4)}]
        conv.append({"role": "assistant", "content": solution})
        rows.append({"id": f"oct28_full6728/samples/task{i}", "conversations": conv})
    # Dirt, skipped: two <execute> blocks in one turn; an unknown role.
    rows.append({"id": "oct28_full6728/samples/bad0", "conversations": [
        {"role": "system", "content": MINT_SYSTEM}, {"role": "user", "content": "Task:\nPrint 1 and 2."},
        {"role": "assistant", "content": "<execute> print(1) </execute> and <execute> print(2) </execute>"},
        {"role": "user", "content": observation("1\n2", 4)}, {"role": "assistant", "content": "Done."}]})
    rows.append({"id": "oct28_full6728/samples/bad1", "conversations": [
        {"role": "system", "content": MINT_SYSTEM}, {"role": "critic", "content": "Task:\nPrint 3."},
        {"role": "assistant", "content": "<solution> 3 </solution>"}]})
    return rows


GENERAL_CHATS = [
    ("Explain what a Python list comprehension is in one sentence.",
     "A list comprehension builds a new list from an iterable in one expression, like [x * 2 for x in items]."),
    ("What does `git rebase` do?", "It replays your commits on top of another base commit, giving a linear history."),
    ("Name three sorting algorithms.", "Quicksort, merge sort and heapsort."),
    ("What is the difference between a process and a thread?",
     "A process has its own memory space; threads share the memory of the process they belong to."),
    ("Why use a virtual environment in Python?",
     "It isolates a project's packages from other projects and from the system Python."),
    ("What is a race condition?", "A bug where the result depends on the timing of concurrent operations."),
    ("When should I use a set instead of a list?",
     "When you need fast membership tests or unique items and don't care about order or duplicates."),
    ("What does HTTP status 404 mean?", "The server could not find the requested resource."),
]


def general_rows() -> list[Row]:
    rows = []
    for i, (question, answer) in enumerate(GENERAL_CHATS):
        conv = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if i % 2 == 0:
            conv.insert(0, {"role": "system", "content": "You are a concise assistant."})
        rows.append({"id": f"sharegpt_gpt4_all/sample{i}", "conversations": conv})
    rows.append({"id": "capybara/empty", "conversations": [{"role": "user", "content": "Hi"},
                                                           {"role": "assistant", "content": "  "}]})
    return rows


COMMITS = {
    "python": ("utils/strings.py", "def slugify(text):\n    return text.lower().replace(' ', '-')\n",
               "import re\n\n\ndef slugify(text):\n    text = re.sub(r'[^a-z0-9 -]', '', text.lower())\n"
               "    return re.sub(r'[ -]+', '-', text).strip('-')\n", "Strip punctuation in slugify"),
    "javascript": ("src/math.js", "function add(a, b) {\n  return a + b;\n}\nmodule.exports = { add };\n",
                   "function add(a, b) {\n  return a + b;\n}\n\nfunction sub(a, b) {\n  return a - b;\n}\n"
                   "module.exports = { add, sub };\n", "Add sub() helper"),
    "java": ("src/main/java/App.java", "public class App {\n    public static void main(String[] args) {\n"
             "        System.out.println(\"Hello\");\n    }\n}\n", "public class App {\n    public static void main("
             "String[] args) {\n        String name = args.length > 0 ? args[0] : \"world\";\n"
             "        System.out.println(\"Hello, \" + name);\n    }\n}\n",
             "Greet the name given on the command line"),
    "go": ("server/port.go", "package server\n\nconst Port = 8080\n", "package server\n\nimport \"os\"\n\n"
           "// Port reads PORT from the environment, defaulting to 8080.\nfunc Port() string {\n\tif p := os.Getenv("
           "\"PORT\"); p != \"\" {\n\t\treturn p\n\t}\n\treturn \"8080\"\n}\n", "Read the port from $PORT"),
    "c++": ("src/vec.cpp", "#include <vector>\n\nint total(std::vector<int> v) {\n  int s = 0;\n"
            "  for (int x : v) s += x;\n  return s;\n}\n",
            "#include <numeric>\n#include <vector>\n\nint total(const std::vector<int>& v) {\n"
            "  return std::accumulate(v.begin(), v.end(), 0);\n}\n", "Pass the vector by const reference"),
    "rust": ("src/lib.rs", "pub fn parse(s: &str) -> i32 {\n    s.parse().unwrap()\n}\n",
             "pub fn parse(s: &str) -> Result<i32, std::num::ParseIntError> {\n    s.trim().parse()\n}\n",
             "Return a Result from parse instead of panicking"),
}


def commit_row(lang: str, path: str, old: str, new: str, subject: str, n: int, body: str = "") -> Row:
    message = subject + ("\n\n" + body if body else "") + "\n"
    return {"commit": hashlib.sha1(f"{lang}/{n}".encode()).hexdigest(), "old_file": path, "new_file": path,
            "old_contents": old, "new_contents": new, "subject": subject, "message": message,
            "lang": {"c++": "C++", "javascript": "JavaScript"}.get(lang, lang.capitalize()), "license": "mit",
            "repos": f"samples/{lang}-demo"}


def commitpackft_rows(lang: str) -> list[Row]:
    path, old, new, subject = COMMITS[lang]
    rows = [commit_row(lang, path, old, new, subject, 0, body="Keeps callers working; covered by the unit tests."),
            commit_row(lang, "README.md", "# Demo\n", f"# Demo\n\nA small {lang} sample project.\n",
                       "Describe the project in the README", 1)]
    if lang == "python":  # dirt, skipped: a diff over 8,000 characters; a commit that changes nothing
        big_old = "".join(f"VALUE_{i} = {i}\n" for i in range(400))
        big_new = "".join(f"VALUE_{i} = {i * 2}\n" for i in range(400))
        rows.append(commit_row(lang, "constants.py", big_old, big_new, "Double every constant", 2))
        rows.append(commit_row(lang, path, old, old, "Touch file", 3))
    return rows


def editpackft_rows() -> list[Row]:
    edits = [
        ("stack.py", "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n"
         "        self.items.append(x)\n", "class Stack:\n    def __init__(self):\n        self.items = []\n\n"
         "    def push(self, x):\n        self.items.append(x)\n\n    def pop(self):\n"
         "        return self.items.pop()\n",
         "Add pop to Stack", "Add a pop method to the Stack class that removes and returns the top item."),
        ("temperature.py", "def c_to_f(c):\n    return c * 9 / 5 + 32\n", "def c_to_f(c):\n    return c * 9 / 5 + 32\n"
         "\n\ndef f_to_c(f):\n    return (f - 32) * 5 / 9\n", "Add Fahrenheit to Celsius",
         "Add the inverse conversion f_to_c."),
        ("counter.py", "def count_words(text):\n    return len(text.split(' '))\n",
         "def count_words(text):\n    return len(text.split())\n", "Fix word count on repeated spaces",
         "Make count_words ignore repeated whitespace."),
        ("config.py", "DEBUG = True\nPORT = 8000\n", "import os\n\nDEBUG = os.environ.get('DEBUG') == '1'\nPORT = int("
         "os.environ.get('PORT', '8000'))\n", "Read settings from the environment",
         "Read DEBUG and PORT from environment variables, keeping 8000 as the default port."),
        ("geometry.py", "import math\n\n\ndef area(r):\n    return 3.14 * r * r\n",
         "import math\n\n\ndef area(r):\n    return math.pi * r * r\n", "Use math.pi for the circle area",
         "Use math.pi instead of 3.14."),
        ("greet.py", "def greet(name):\n    print('Hello ' + name)\n",
         "def greet(name: str) -> str:\n    return f'Hello {name}'\n", "Return the greeting instead of printing it",
         "Change greet to return the string and add type hints."),
    ]
    rows = []
    for i, (path, old, new, subject, instruction) in enumerate(edits):
        rows.append({"commit": f"{i:040x}", "old_file": path, "new_file": path, "old_contents": old,
                     "new_contents": new, "subject": subject, "message": subject + "\n", "lang": "Python",
                     "license": "mit", "repos": "samples/editpack-demo", "ndiff": "", "instruction": instruction,
                     "content": f"## Code Before:\n{old}\n## Instruction:\n{instruction}\n## Code After:\n{new}"})
    bad = dict(rows[0], subject="", message="", instruction="")  # dirt, skipped: no message at all
    return rows + [bad]


# ----------------------------------------------------------------------------------------------- preferences

HH_DIALOGUES = [
    ("How do I boil an egg?", "Put it in boiling water for about 9 minutes, then cool it in cold water.",
     "Eggs are from chickens."),
    ("Can you recommend a good book on habits?", "Atomic Habits by James Clear is a popular, practical choice.",
     "Books are nice."),
    ("What's a healthy breakfast?", "Oatmeal with fruit and nuts, or eggs with whole-grain toast.",
     "Just skip breakfast, it doesn't matter."),
    ("How can I sleep better?", "Keep a regular schedule, avoid screens before bed and keep the room cool and dark.",
     "Drink coffee at night."),
    ("How do I apologise to a friend?", "Say what you did, that you're sorry, and ask how you can make it right.",
     "Don't bother, they'll forget."),
    ("What's the capital of Australia?", "Canberra.", "Sydney."),
    ("How do I start running?", "Start with short run-walk intervals three times a week and build up slowly.",
     "Run a marathon tomorrow."),
    ("Is it safe to mix bleach and ammonia?", "No. Mixing them releases toxic chloramine gas; never combine them.",
     "Sure, it cleans better."),
    ("How do I save money on groceries?", "Plan meals, make a list, buy store brands and avoid shopping hungry.",
     "Buy whatever you want."),
    ("What is photosynthesis?", "Plants turn light, water and carbon dioxide into sugar and oxygen.",
     "Something about plants, I think."),
    ("How do I learn a new language?", "Practise a little every day, speak early and use spaced repetition.",
     "It's impossible after 20."),
    ("Why is the sky blue?", "Air scatters short blue wavelengths of sunlight more than red ones.",
     "Because it reflects the ocean."),
    ("Should I back up my files?", "Yes: keep at least one copy on another device and one off-site or in the cloud.",
     "No, computers never fail."),
    ("How long should I steep green tea?", "About 2-3 minutes at 75-80 °C; longer turns it bitter.",
     "An hour in boiling water."),
    ("How do I stay focused while studying?", "Work in 25-minute blocks, silence your phone and take short breaks.",
     "Study with the TV on."),
    ("What's a good way to learn to code?", "Pick one language, build small projects and read other people's code.",
     "Memorise the manual."),
]


def hh(*turns: tuple[str, str]) -> str:
    return "".join(f"\n\n{'Human' if who == 'h' else 'Assistant'}: {text}" for who, text in turns)


def hh_rows() -> list[Row]:
    rows = []
    for i, (question, good, bad) in enumerate(HH_DIALOGUES):
        prefix: list[tuple[str, str]] = [("h", question)]
        if i % 3 == 0:  # multi-turn prompts
            prefix = [("h", "Hi, can I ask you something?"), ("a", "Of course, go ahead."), ("h", question)]
        rows.append({"chosen": hh(*prefix, ("a", good)), "rejected": hh(*prefix, ("a", bad))})
    # Dirt: empty final chosen turn; prefixes that diverge before the last turn; two Assistant turns in a row;
    # identical answers; an embedded "Human:" inside an assistant turn (kept: it is text, not a turn marker).
    rows.append({"chosen": hh(("h", "Tell me her home address.")) + "\n\nAssistant: ",
                 "rejected": hh(("h", "Tell me her home address."), ("a", "Sure, it is 12 Main St."))})
    rows.append({"chosen": hh(("h", "Picnic tips?"), ("a", "Bring shade."), ("h", "And food?"), ("a", "Fruit.")),
                 "rejected": hh(("h", "Picnic tips?"), ("a", "Bring rain."), ("h", "And food?"), ("a", "None."))})
    rows.append({"chosen": hh(("h", "Hello"), ("a", "Hi!"), ("a", "How are you?")),
                 "rejected": hh(("h", "Hello"), ("a", "Go away."))})
    rows.append({"chosen": hh(("h", "Say yes."), ("a", "Yes.")), "rejected": hh(("h", "Say yes."), ("a", "Yes."))})
    rows.append({"chosen": hh(("h", "Is music good for you?"), ("a", "Human: I think so. It can lift your mood.")),
                 "rejected": hh(("h", "Is music good for you?"), ("a", "No."))})
    return rows


CODE_FEEDBACK = [
    ("Write a Python function that returns the factorial of n.", "python",
     "Here is an iterative implementation:\n\n```python\ndef factorial(n):\n    result = 1\n"
     "    for i in range(2, n + 1):\n        result *= i\n    return result\n```\n\n"
     "It returns 1 for n = 0 and runs in O(n) time."),
    ("Write a SQL query that counts orders per customer.", "sql",
     "Group the orders by customer:\n\n```sql\nSELECT customer_id, COUNT(*) AS orders\nFROM orders\n"
     "GROUP BY customer_id\nORDER BY orders DESC;\n```\n\nThis lists every customer with the number of orders."),
    ("Reverse a linked list in Java.", "java",
     "Walk the list once and flip each pointer:\n\n```java\nNode reverse(Node head) {\n    Node prev = null;\n"
     "    while (head != null) {\n        Node next = head.next;\n        head.next = prev;\n        prev = head;\n"
     "        head = next;\n    }\n    return prev;\n}\n```\n\nTime O(n), extra space O(1)."),
    ("Check if a string is a palindrome in JavaScript.", "javascript",
     "Normalise the string and compare it with its reverse:\n\n```javascript\nfunction isPalindrome(s) {\n"
     "  const t = s.toLowerCase().replace(/[^a-z0-9]/g, '');\n  return t === [...t].reverse().join('');\n}\n```"),
    ("How do I read a file line by line in Go?", "go",
     "Use a bufio.Scanner:\n\n```go\nf, err := os.Open(path)\nif err != nil {\n    return err\n}\ndefer f.Close()\n"
     "sc := bufio.NewScanner(f)\nfor sc.Scan() {\n    fmt.Println(sc.Text())\n}\nreturn sc.Err()\n```"),
    ("Sum a vector of integers in Rust.", "rust",
     "Iterators make this one line:\n\n```rust\nfn total(v: &[i64]) -> i64 {\n    v.iter().sum()\n}\n```\n\n"
     "Taking a slice lets callers pass a Vec or an array."),
    ("Remove duplicates from a list in Python while keeping order.", "python",
     "A dict keeps insertion order, so:\n\n```python\ndef dedupe(items):\n"
     "    return list(dict.fromkeys(items))\n```\n\n"
     "This works for hashable items and runs in O(n)."),
    ("Write a bash loop that renames *.txt files to *.md.", "bash",
     "Use parameter expansion to swap the suffix:\n\n```bash\nfor f in *.txt; do\n    mv -- \"$f\" \"${f%.txt}.md\"\n"
     "done\n```\n\nThe `--` protects names that start with a dash."),
    ("Find the maximum value in a C++ vector.", "c++",
     "Use std::max_element from <algorithm>:\n\n```cpp\nint maxValue(const std::vector<int>& v) {\n"
     "    return *std::max_element(v.begin(), v.end());\n}\n```\n\nCheck that the vector is not empty first."),
    ("Flatten a nested list in Python.", "python",
     "A recursive generator handles any depth:\n\n```python\ndef flatten(items):\n    for x in items:\n"
     "        if isinstance(x, list):\n            yield from flatten(x)\n        else:\n            yield x\n```"),
    ("Debounce a function in TypeScript.", "typescript",
     "Keep a timer and reset it on every call:\n\n```typescript\nfunction debounce<T extends unknown[]>(fn: (...a: T)"
     " => void, ms: number) {\n  let t: ReturnType<typeof setTimeout>;\n  return (...a: T) => {\n"
     "    clearTimeout(t);\n    t = setTimeout(() => fn(...a), ms);\n  };\n}\n```"),
    ("Parse JSON safely in Python.", "python",
     "Catch the decode error and report it:\n\n```python\nimport json\n\ndef load(text):\n    try:\n"
     "        return json.loads(text)\n    except json.JSONDecodeError as err:\n"
     "        raise ValueError(f'bad JSON at line {err.lineno}') from err\n```"),
    ("Compute Fibonacci numbers efficiently in Python.", "python",
     "Iterate with two variables instead of recursing:\n\n```python\ndef fib(n):\n    a, b = 0, 1\n"
     "    for _ in range(n):\n        a, b = b, a + b\n    return a\n```\n\nO(n) time and O(1) memory."),
]


def code_feedback_rows() -> list[Row]:
    rows = [{"query": q, "answer": a, "resource": ("evolinstruct", "magicoder", "wizardcoder", "sharegpt")[i % 4],
             "lang": lang} for i, (q, lang, a) in enumerate(CODE_FEEDBACK)]
    rows.append({"query": "Write hello world in C.", "answer": "", "resource": "evolinstruct", "lang": "c"})
    rows.append({"query": "Print 1 in Python.", "answer": "print(1)", "resource": "magicoder", "lang": "python"})
    return rows


# ------------------------------------------------------------------------------------------------------ write


def all_files() -> dict[str, list[Row]]:
    files = {
        local_filename("glaiveai/glaive-function-calling-v2", None): glaive_rows(),
        local_filename("Salesforce/xlam-function-calling-60k", None): xlam_rows(),
        local_filename("NousResearch/hermes-function-calling-v1", "func_calling_singleturn"):
            hermes_function_rows("func_calling_singleturn", multi_turn=False),
        local_filename("NousResearch/hermes-function-calling-v1", "func_calling"):
            hermes_function_rows("func_calling", multi_turn=True),
        local_filename("NousResearch/hermes-function-calling-v1", "glaive_func_calling"): hermes_glaive_rows(),
        local_filename("NousResearch/hermes-function-calling-v1", "json_mode_singleturn"):
            hermes_json_rows("json_mode_singleturn"),
        local_filename("NousResearch/hermes-function-calling-v1", "json_mode_agentic"):
            hermes_json_rows("json_mode_agentic"),
        local_filename("xingyaoww/code-act", "codeact"): code_act_rows(),
        local_filename("xingyaoww/code-act", "general"): general_rows(),
        local_filename("nuprl/EditPackFT", None): editpackft_rows(),
        local_filename("Anthropic/hh-rlhf", None): hh_rows(),
        local_filename("m-a-p/CodeFeedback-Filtered-Instruction", None): code_feedback_rows(),
    }
    for lang in COMMITS:
        files[local_filename("bigcode/commitpackft", lang)] = commitpackft_rows(lang)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "samples")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, rows in all_files().items():
        lines = [json.dumps(row, ensure_ascii=False) for row in rows]
        if name.startswith("Salesforce"):
            lines.append('{"id": 103, "query": "truncated line')  # dirt: a line that is not JSON at all
        (args.out / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        total += len(lines)
    size = sum(p.stat().st_size for p in args.out.glob("*.jsonl"))
    print(f"make_samples: {total} rows in {len(all_files())} files under {args.out} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
