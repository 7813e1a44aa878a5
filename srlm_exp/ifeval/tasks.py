"""Base tasks of the IFEval world: what a prompt asks for before its verifiable constraints.

A base task is a form ("Write a poem about {topic}.") filled with a topic ("honeybees"). There are
27 forms and 90 topics: 2,430 base tasks. The split between held-out prompts (eval, judge_eval) and
training prompts (EFT, IFT, the loop's prompt pool) is by *topic*: a held-out topic's base tasks never
appear in training, so a held-out prompt shares no base task (and no topic) with any training prompt.
The forms are shared: they are how a request is phrased, not what it is about.

No base task contains a comma: `combination:repeat_prompt` asks the response to repeat the request
word for word, and with `punctuation:no_comma` beside it a comma in the request would make the prompt
unsatisfiable. The yes/no forms are the only ones `detectable_format:constrained_response` ("Answer with
one of the following options: My answer is yes/no/maybe.") is put on.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["FORMS", "YES_NO_FORMS", "TOPICS", "BaseTask", "all_base_tasks", "split_topics", "split_base_tasks"]

# Open-ended requests: any constraint but constrained_response fits them.
FORMS: tuple[str, ...] = (
    "Write a short essay about {topic}.",
    "Write a poem about {topic}.",
    "Write a blog post about {topic}.",
    "Describe {topic} to a ten-year-old.",
    "Explain the importance of {topic}.",
    "Give advice to a beginner who wants to learn about {topic}.",
    "Write a letter to a friend about {topic}.",
    "Write a product description for a book about {topic}.",
    "Write a short story that involves {topic}.",
    "Summarize what most people should know about {topic}.",
    "Write a speech about {topic} for a school assembly.",
    "Write a list of interesting facts about {topic}.",
    "Write a news article about {topic}.",
    "Write a song about {topic}.",
    "Write a riddle about {topic}.",
    "Write a tweet about {topic}.",
    "Write an advertisement for a workshop on {topic}.",
    "Write a dialogue between two friends discussing {topic}.",
    "Write a limerick about {topic}.",
    "Write a review of a museum exhibition on {topic}.",
    "Write a lesson plan for a class on {topic}.",
    "Write an email to your team about {topic}.",
    "Write a diary entry about a day spent learning about {topic}.",
    "Write a pitch for a documentary about {topic}.",
)
# Questions with a yes/no answer: the only forms constrained_response is put on (any other constraint fits too).
YES_NO_FORMS: tuple[str, ...] = (
    "Is learning about {topic} worthwhile?",
    "Do you think {topic} will matter more in ten years?",
    "Should every school teach a unit on {topic}?",
)

TOPICS: tuple[str, ...] = (
    "the ocean", "honeybees", "volcanoes", "the history of chess", "learning a second language", "remote work",
    "city gardens", "public libraries", "electric cars", "the moon landing", "sleep", "coffee", "recycling",
    "the printing press", "jazz music", "board games", "rainforests", "bicycles", "the water cycle", "friendship",
    "time management", "saving money", "healthy breakfasts", "the Roman Empire", "photosynthesis", "video games",
    "public transport", "deserts", "street food", "the internet", "climate change", "kindness", "hiking",
    "dinosaurs", "solar energy", "ancient Egypt", "penguins", "the human heart", "mountain climbing", "rainy days",
    "social media", "museums", "the first day of school", "a small bakery", "a lighthouse keeper",
    "space exploration", "artificial intelligence", "the Olympic Games", "tea", "origami", "night markets",
    "the Great Wall of China", "coral reefs", "moving to a new city", "learning to cook", "winter holidays",
    "the piano", "old maps", "trains", "pirates", "the stock market", "vaccines", "online privacy", "minimalism",
    "camping", "elephants", "the periodic table", "chocolate", "gardening", "a village festival", "wind turbines",
    "the Silk Road", "robots", "earthquakes", "owls", "poetry", "soccer", "meditation", "family dinners",
    "the night sky", "bread baking", "rivers", "the telephone", "honesty", "marathons", "the Arctic",
    "handwriting", "volunteering", "forests in autumn", "clocks",
)


@dataclass(frozen=True)
class BaseTask:
    form: str      # the form's template, "{topic}" unfilled
    topic: str
    yes_no: bool   # a yes/no question (constrained_response fits it)

    @property
    def text(self) -> str:
        return self.form.format(topic=self.topic)


def all_base_tasks(topics: tuple[str, ...] | list[str] = TOPICS) -> list[BaseTask]:
    """Every form filled with every topic in `topics`, in a fixed order (topics outer, forms inner)."""
    return [BaseTask(f, t, yes_no) for t in topics
            for forms, yes_no in ((FORMS, False), (YES_NO_FORMS, True)) for f in forms]


def split_topics(seed: int, held_out_share: float, validation_share: float = 0.0
                 ) -> tuple[list[str], list[str], list[str]]:
    """(training topics, held-out topics, validation topics): `held_out_share` of the topics, chosen with
    `seed`, are held out for the test split, and the next `validation_share` for the validation split (at
    least one training and one held-out topic; no validation topic at share 0)."""
    order = list(TOPICS)
    random.Random(f"ifeval-topics:{seed}").shuffle(order)
    n_held = min(len(order) - 1, max(1, round(held_out_share * len(order))))
    n_val = min(len(order) - n_held - 1, round(validation_share * len(order)))
    return sorted(order[n_held + n_val:]), sorted(order[:n_held]), sorted(order[n_held:n_held + n_val])


def split_base_tasks(seed: int, held_out_share: float, validation_share: float = 0.0
                     ) -> tuple[list[BaseTask], list[BaseTask], list[BaseTask]]:
    """(training, held-out, validation) base tasks, split by topic (see the module docstring)."""
    return tuple(all_base_tasks(topics) for topics in split_topics(seed, held_out_share, validation_share))  # type: ignore[return-value]
