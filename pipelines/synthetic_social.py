"""A synthetic social network: a data source for offline evaluation, tests and benchmarks.

Users have hidden interests (a Dirichlet mix over topics, concentrated on one to three);
posts are written on one topic from topic-specific templates, so their MiniLM vectors cluster
by topic the way real posts do; each post has a hidden quality. Users open the app in
sessions, see recent posts and react with probabilities that follow their interest in the
post's topic and the post's quality: views, likes, comments and shares for what they like,
hides (and rarely reports) for what they do not.

Deterministic for a given seed. ``generate()`` returns plain dicts in the shapes the event
routes accept (times as epoch seconds under ``created_at_s`` / ``timestamp_s``).

It lives in ``pipelines`` because both sides use it: the recommender's unit and integration
tests feed it through the service, and the offline evaluation and benchmarks (``bench/``)
replay it; its interactions written as JSONL (``python -m bench.export_interactions``) are a
``source: jsonl`` input of ``pipelines.recommender_mf``. Nothing in the serving path imports it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

DAY_S = 86_400.0

# Per topic: templates with {slots} and the words that fill them.
TOPICS: dict[str, dict[str, Any]] = {
    "cooking": {
        "templates": [
            "Made {dish} tonight with {ingredient}, the whole kitchen smells amazing",
            "My grandmother's recipe for {dish}: the secret is {ingredient} and patience",
            "Tried a new way to cook {dish}, slow simmered with {ingredient}",
            "Meal prep Sunday: {dish} and roasted vegetables with {ingredient}",
            "Anyone have tips for {dish}? Mine always comes out dry, even with {ingredient}",
            "Baking day! {dish} fresh out of the oven, topped with {ingredient}",
        ],
        "slots": {
            "dish": [
                "lasagna",
                "sourdough bread",
                "chicken curry",
                "risotto",
                "banana bread",
                "beef stew",
                "pad thai",
                "apple pie",
                "homemade ramen",
                "pancakes",
            ],
            "ingredient": [
                "garlic butter",
                "fresh basil",
                "smoked paprika",
                "parmesan",
                "coconut milk",
                "cinnamon",
                "ginger",
                "olive oil",
                "rosemary",
            ],
        },
    },
    "football": {
        "templates": [
            "What a match! {team} scored {n} goals in the second half",
            "{player} is the best striker in the league this season, no debate",
            "Can't believe the referee gave that penalty against {team}",
            "Derby day tomorrow: {team} need a win to stay in the title race",
            "Transfer rumour: {player} might leave {team} this summer",
            "Watching {team} at the stadium tonight, the atmosphere is electric",
        ],
        "slots": {
            "team": [
                "Arsenal",
                "Barcelona",
                "Bayern",
                "Liverpool",
                "Juventus",
                "Ajax",
                "Real Madrid",
                "Celtic",
                "Benfica",
            ],
            "player": [
                "the new winger",
                "our captain",
                "the young midfielder",
                "their goalkeeper",
                "the veteran defender",
            ],
            "n": ["two", "three", "four"],
        },
    },
    "tech": {
        "templates": [
            "Just upgraded to a new {device}, the {feature} is a huge improvement",
            "Spent the whole night debugging {language} code, turned out to be a {bug}",
            "Hot take: {language} is the most underrated programming language",
            "The new {device} benchmarks are out and the {feature} numbers are wild",
            "Finally migrated our servers to {language}; the {bug} is gone",
            "Is it worth buying a {device} for machine learning work?",
        ],
        "slots": {
            "device": [
                "laptop",
                "graphics card",
                "smartphone",
                "mechanical keyboard",
                "home server",
                "tablet",
            ],
            "feature": [
                "battery life",
                "GPU performance",
                "display",
                "memory bandwidth",
                "compile time",
            ],
            "language": ["Rust", "Python", "Go", "TypeScript", "Haskell", "C++"],
            "bug": ["race condition", "memory leak", "off-by-one error", "null pointer bug"],
        },
    },
    "travel": {
        "templates": [
            "Landed in {city} this morning, the view from the hotel is incredible",
            "Backpacking through {country} for {n} weeks, any must-see places?",
            "Sunset over the old town of {city}, best trip of my life",
            "Cheap flights to {country} this month, packing my bags already",
            "Day {n} of the road trip across {country}: mountains, lakes, no signal",
            "Hidden gem: a tiny beach near {city} with almost no tourists",
        ],
        "slots": {
            "city": [
                "Lisbon",
                "Kyoto",
                "Marrakesh",
                "Prague",
                "Cape Town",
                "Hanoi",
                "Reykjavik",
                "Buenos Aires",
            ],
            "country": [
                "Portugal",
                "Japan",
                "Morocco",
                "Iceland",
                "Vietnam",
                "Chile",
                "New Zealand",
                "Norway",
            ],
            "n": ["two", "three", "five"],
        },
    },
    "fitness": {
        "templates": [
            "New personal record on {lift} today: {n} kilos!",
            "Morning {cardio} done before sunrise, {n} kilometres feeling strong",
            "Leg day again: squats, lunges and {lift} until I could barely walk",
            "Training for my first {event}, week {n} of the plan",
            "Stretching and mobility work matter as much as {lift}, trust me",
            "Rest day after a brutal {cardio} session, protein shake and sleep",
        ],
        "slots": {
            "lift": ["deadlift", "bench press", "squats", "pull-ups", "overhead press"],
            "cardio": ["run", "cycling", "swim", "rowing workout", "HIIT"],
            "event": ["marathon", "triathlon", "half marathon", "powerlifting meet"],
            "n": ["five", "ten", "twelve", "eighty", "one hundred"],
        },
    },
    "music": {
        "templates": [
            "Saw {band} live last night, the {instrument} solo gave me chills",
            "Learning to play the {instrument}, day {n} and my fingers hurt",
            "New {genre} album on repeat all week, every track is a banger",
            "Unpopular opinion: {band} peaked with their second {genre} record",
            "Festival lineup announced and {band} is headlining!",
            "Recorded my first {genre} song at home with just a {instrument}",
        ],
        "slots": {
            "band": [
                "the headliner",
                "my favourite indie band",
                "a jazz quartet",
                "the symphony orchestra",
                "a local punk band",
            ],
            "instrument": ["guitar", "piano", "drums", "violin", "bass", "saxophone"],
            "genre": ["jazz", "rock", "hip hop", "classical", "electronic", "folk"],
            "n": ["three", "ten", "thirty"],
        },
    },
    "gardening": {
        "templates": [
            "My {plant} finally bloomed after months of waiting",
            "Planted {plant} and {veg} in the backyard beds this weekend",
            "First harvest of {veg} from the garden, so proud",
            "How do you keep slugs away from the {veg}? They ate everything",
            "Composting tip: {tip} makes a huge difference for the {plant}",
            "Repotted all my {plant} today, the balcony looks like a jungle",
        ],
        "slots": {
            "plant": ["tomatoes", "roses", "succulents", "orchids", "lavender", "sunflowers"],
            "veg": ["zucchini", "carrots", "lettuce", "peppers", "green beans", "potatoes"],
            "tip": ["coffee grounds", "eggshells", "turning the pile weekly", "dry leaves"],
        },
    },
    "movies": {
        "templates": [
            "Just watched {film} and the ending left me speechless",
            "The {genre} movie everyone talks about is overrated, fight me",
            "Rewatching {film} for the {n} time, the soundtrack still hits",
            "Cinema night: {film} on the big screen, the cinematography is stunning",
            "Ranking every {genre} film I saw this year, number one surprised me",
            "The director's cut of {film} is twenty minutes longer and much better",
        ],
        "slots": {
            "film": [
                "the new sci-fi epic",
                "that indie drama",
                "the animated sequel",
                "a classic noir",
                "the superhero finale",
                "the horror remake",
            ],
            "genre": ["horror", "comedy", "thriller", "documentary", "sci-fi"],
            "n": ["third", "fifth", "tenth"],
        },
    },
}

TOPIC_NAMES = list(TOPICS)


@dataclass
class SyntheticSocial:
    """The generated network: users' hidden interests, posts and time-ordered interactions."""

    interests: dict[str, npt.NDArray[np.float64]]
    posts: list[dict[str, Any]]
    interactions: list[dict[str, Any]]
    post_topic: dict[str, str] = field(default_factory=dict)
    start_s: float = 0.0
    end_s: float = 0.0


def post_text(topic: str, rng: random.Random) -> str:
    """One post on ``topic`` from its templates, slots filled at random."""
    spec = TOPICS[topic]
    template: str = rng.choice(spec["templates"])
    values = {slot: rng.choice(words) for slot, words in spec["slots"].items()}
    return template.format(**values)


def generate(
    n_users: int = 200,
    n_posts: int = 1500,
    days: float = 14.0,
    sessions_per_day: float = 1.5,
    impressions_per_session: int = 12,
    seed: int = 0,
    start_s: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
    topics: list[str] | None = None,
) -> SyntheticSocial:
    """Generate users, posts and interactions; everything sorted by time."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    names = topics or TOPIC_NAMES
    end_s = start_s + days * DAY_S
    users = [f"user-{i:04d}" for i in range(n_users)]
    interests = {u: np_rng.dirichlet([0.25] * len(names)) for u in users}
    posts: list[dict[str, Any]] = []
    topic_of: dict[str, str] = {}
    quality: dict[str, float] = {}
    for i in range(n_posts):
        topic = rng.choice(names)
        post_id = f"post-{i:05d}"
        tags = [topic] if rng.random() < 0.8 else []
        posts.append(
            {
                "post_id": post_id,
                "author_id": rng.choice(users),
                "text": post_text(topic, rng),
                "image_urls": [],
                "tags": tags,
                "created_at_s": start_s + rng.random() * (end_s - start_s),
            }
        )
        topic_of[post_id] = topic
        quality[post_id] = float(np_rng.lognormal(0.0, 0.5))
    posts.sort(key=lambda p: p["created_at_s"])
    created = np.array([p["created_at_s"] for p in posts])
    topic_index = {t: i for i, t in enumerate(names)}
    interactions: list[dict[str, Any]] = []
    for user in users:
        n_sessions = np_rng.poisson(sessions_per_day * days)
        for t in sorted(start_s + np_rng.random(n_sessions) * (end_s - start_s)):
            # A session shows posts from the last three days, newest more likely.
            low = int(np.searchsorted(created, t - 3 * DAY_S))
            high = int(np.searchsorted(created, t))
            if high <= low:
                continue
            shown = rng.sample(range(low, high), min(impressions_per_session, high - low))
            for k, index in enumerate(shown):
                post = posts[index]
                affinity = float(interests[user][topic_index[topic_of[post["post_id"]]]])
                boost = min(quality[post["post_id"]], 3.0)
                at = float(t) + 5.0 * k
                kinds: list[str] = []
                if rng.random() < 0.3:
                    kinds.append("view")
                if rng.random() < min(0.9, 0.8 * affinity * boost):
                    kinds.append("like")
                    if rng.random() < 0.25:
                        kinds.append("comment")
                    if rng.random() < 0.12:
                        kinds.append("share")
                elif rng.random() < 0.08 * (1.0 - affinity):
                    kinds.append("report" if rng.random() < 0.1 else "hide")
                for kind in kinds:
                    interactions.append(
                        {
                            "event_id": f"ev-{len(interactions):07d}",
                            "user_id": user,
                            "post_id": post["post_id"],
                            "type": kind,
                            "timestamp_s": at,
                        }
                    )
                    at += 1.0
    interactions.sort(key=lambda e: (e["timestamp_s"], e["event_id"]))
    return SyntheticSocial(interests, posts, interactions, topic_of, start_s, end_s)
