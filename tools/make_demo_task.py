"""Generate the bundled demo task: order details out of free-text customer messages, as JSON.

Run `python tools/make_demo_task.py` to rewrite src/tunesmith/tasks/orders/*.jsonl; the output is
the same for the same seed. The task is made up by us, so the data is ours to ship.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20261126
OUT = Path(__file__).resolve().parents[1] / "src" / "tunesmith" / "tasks" / "orders"
SYSTEM = (
    "Extract the order from the customer's message. Answer with JSON only, with the keys "
    "customer, product, quantity (a number), city and date (YYYY-MM-DD, year 2026)."
)

FIRST = [
    "Ana",
    "Ben",
    "Chloe",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Oskar",
    "Priya",
    "Quinn",
    "Rosa",
    "Samir",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Liam",
    "Maya",
    "Noah",
    "Aiko",
]
LAST = [
    "Silva",
    "Okafor",
    "Novak",
    "Schmidt",
    "Rossi",
    "Tanaka",
    "Haddad",
    "Kowalski",
    "Moreau",
    "Lindqvist",
    "Mensah",
    "Garcia",
    "Petrov",
    "Nguyen",
    "Dubois",
    "Hansen",
    "Costa",
    "Ahmed",
    "Fischer",
    "Kim",
    "Larsen",
    "Romero",
    "Becker",
    "Sato",
    "Weber",
    "Ivanova",
    "Murphy",
    "Jensen",
    "Torres",
    "Ali",
]
PRODUCTS = [
    "desk lamps",
    "office chairs",
    "standing desks",
    "USB-C cables",
    "laptop stands",
    "whiteboards",
    "ergonomic keyboards",
    "wireless mice",
    "monitor arms",
    "printer toner",
    "coffee machines",
    "water filters",
    "label printers",
    "bookshelves",
    "filing cabinets",
    "noise-cancelling headphones",
    "webcams",
    "desk organizers",
    "power strips",
    "paper shredders",
    "conference phones",
    "projector screens",
    "floor mats",
    "LED panels",
    "storage boxes",
    "footrests",
    "document scanners",
    "air purifiers",
    "cable trays",
    "coat racks",
]
CITIES = [
    "Lisbon",
    "Lagos",
    "Prague",
    "Hamburg",
    "Milan",
    "Osaka",
    "Beirut",
    "Krakow",
    "Lyon",
    "Uppsala",
    "Accra",
    "Valencia",
    "Sofia",
    "Hanoi",
    "Marseille",
    "Aarhus",
    "Porto",
    "Cairo",
    "Leipzig",
    "Busan",
    "Bergen",
    "Seville",
    "Munich",
    "Sapporo",
    "Zurich",
    "Tallinn",
    "Dublin",
    "Odense",
    "Bilbao",
    "Tunis",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
WORDS = {
    1: "one",
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
    12: "twelve",
    20: "twenty",
}
TEMPLATES = [
    "Hi, this is {name}. Please send {qty} {product} to our office in {city} by {date}.",
    "Order request: {qty} x {product}. Deliver to {city} on {date}. Thanks, {name}",
    "{name} here - could you ship {qty} {product} to {city}? We need them by {date}.",
    "Hello! I'd like to order {qty} {product}. Shipping address is in {city}, delivery {date}. Regards, {name}",
    "Please deliver {qty} {product} to {city} on {date}. Contact: {name}.",
    "We need {qty} {product} for the {city} branch, no later than {date}. - {name}",
    "Can I get {qty} {product} delivered to {city}? {date} would be ideal. Best, {name}",
    "Dear team, {name} from {city} would like {qty} {product}, arriving {date}.",
    "New order from {name}: {product}, quantity {qty}, destination {city}, due {date}.",
    "Good morning, {name} speaking. Our {city} site needs {qty} {product} on {date}, please.",
]


def date_text(rng: random.Random, month: int, day: int) -> str:
    name = MONTHS[month - 1]
    suffix = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}.get(day, "th")
    return rng.choice(
        [
            f"{name} {day}",
            f"{day} {name}",
            f"the {day}{suffix} of {name}",
            f"{name[:3]} {day}",
            f"{name} {day}, 2026",
        ]
    )


def example(rng: random.Random) -> dict:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    product, city = rng.choice(PRODUCTS), rng.choice(CITIES)
    qty = rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 24, 25, 30, 40, 50])
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    qty_text = WORDS[qty] if qty in WORDS and rng.random() < 0.3 else str(qty)
    message = rng.choice(TEMPLATES).format(
        name=name, qty=qty_text, product=product, city=city, date=date_text(rng, month, day)
    )
    answer = {
        "customer": name,
        "product": product,
        "quantity": qty,
        "city": city,
        "date": f"2026-{month:02d}-{day:02d}",
    }
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": message},
            {"role": "assistant", "content": json.dumps(answer)},
        ]
    }


def main() -> None:
    rng = random.Random(SEED)
    seen: set[str] = set()
    rows: list[dict] = []
    while len(rows) < 440:  # unique user messages, so no test example leaks from training
        row = example(rng)
        if row["messages"][1]["content"] not in seen:
            seen.add(row["messages"][1]["content"])
            rows.append(row)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", rows[:300]), ("validation", rows[300:340]), ("test", rows[340:])):
        with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)
        print(f"{OUT / name}.jsonl: {len(part)} examples")


if __name__ == "__main__":
    main()
