"""Soft actor-critic over SCALL's action ``(ρ, α_U, α_I) ∈ (0, 1)³``.

Tiny networks on the CPU, seeded from RecBole's seed through their own generators: building
or using the agent never touches torch's or numpy's global random state. ``nets="authors"`` builds
them as the authors' ``ActorCritic.py`` does (Xavier-uniform weights and zero biases, log-std floor
−20, the log-density of the affine map to (0, 1) with its factor ½); ``"plugin"`` is the plugin's own
(PyTorch's default init, floor −5, the factor left out).
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recbole_lightemb.storage.run_state import load_parts, parts_state

ACTION_DIM = 3
NETS = {"authors": {"log_std_min": -20.0, "scale": 0.5}, "plugin": {"log_std_min": -5.0, "scale": 1.0}}
LOG_STD_MAX = 2.0
AUTHORS_BATCHES = (1, 8, 12)
"""``Buffer.sample``: 1 transition per update while the replay holds at most 12, then 8, without replacement."""


def _mlp(inputs, hidden, outputs):
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, outputs))


def _xavier(module):
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


class Actor(nn.Module):
    """Gaussian policy; ``tanh`` squashes it and an affine map puts it in (0, 1)."""

    def __init__(self, state_dim, hidden, log_std_min=-20.0, scale=0.5):
        super().__init__()
        self.body = _mlp(state_dim, hidden, 2 * ACTION_DIM)
        self.log_std_min, self.scale = log_std_min, scale

    def forward(self, state, generator=None, deterministic=False):
        mean, log_std = self.body(state).chunk(2, dim=-1)
        log_std = log_std.clamp(self.log_std_min, LOG_STD_MAX)
        if deterministic:
            return (torch.tanh(mean) + 1) / 2, None
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        z = mean + log_std.exp() * noise
        squashed = torch.tanh(z)
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
        log_prob = log_prob - torch.log(self.scale * (1 - squashed.pow(2)) + 1e-6).sum(-1)
        return (squashed + 1) / 2, log_prob


class Critic(nn.Module):
    """Twin Q networks on (state, action)."""

    def __init__(self, state_dim, hidden):
        super().__init__()
        self.q1 = _mlp(state_dim + ACTION_DIM, hidden, 1)
        self.q2 = _mlp(state_dim + ACTION_DIM, hidden, 1)

    def forward(self, state, action):
        x = torch.cat([state, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


class RecencyReplay:
    """Transitions kept in order; a batch draws transition ``i`` (1 = oldest) with probability
    ∝ ``i``, so the policy follows the stream's recent segments more than old ones."""

    def __init__(self, capacity, rng):
        self.capacity = capacity
        self.rng = rng
        self.items = []

    def __len__(self):
        return len(self.items)

    def add(self, state, action, reward, next_state):
        self.items.append((state, action, reward, next_state))
        if len(self.items) > self.capacity:
            self.items.pop(0)

    def state(self):
        """The transitions (stacked per field, oldest first) and the generator's state, as data."""
        fields = list(zip(*self.items)) if self.items else [[], [], [], []]
        stacked = [torch.from_numpy(np.asarray(np.stack(f) if len(f) else np.zeros(0), dtype=np.float64))
                   for f in fields]
        return {"states": stacked[0], "actions": stacked[1], "rewards": stacked[2], "next_states": stacked[3],
                "rng": self.rng.bit_generator.state}

    def load(self, state):
        fields = [state[k].numpy() for k in ("states", "actions", "rewards", "next_states")]
        if len({len(f) for f in fields}) != 1 or len(fields[0]) > self.capacity:
            raise ValueError("replay fields of different lengths, or more than its capacity")
        self.items = [(s.astype(np.float32), a, float(r), n.astype(np.float32)) for s, a, r, n in zip(*fields)]
        self.rng.bit_generator.state = state["rng"]

    def sample(self, batch_size, replace=True):
        ranks = np.arange(1, len(self.items) + 1, dtype=np.float64)
        picked = self.rng.choice(len(self.items), size=batch_size, replace=replace, p=ranks / ranks.sum())
        columns = zip(*(self.items[i] for i in picked))
        return [torch.as_tensor(np.stack(c), dtype=torch.float32) for c in columns]


class SACAgent:
    """Actor, twin critics with a soft-updated target, fixed entropy weight.

    ``batch_size=None`` samples the replay as the authors do (:data:`AUTHORS_BATCHES`), an integer draws
    that many with replacement; ``actor_clip`` (> 0) caps the actor's gradient norm, as ``ActorCritic.py`` does.
    """

    def __init__(self, state_dim, seed, hidden=512, entropy=0.2, tau=0.005, gamma=0.99, actor_lr=2e-4,
                 critic_lr=3e-4, weight_decay=1e-4, actor_clip=1.0, batch_size=None, nets="authors", capacity=10000):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = Actor(state_dim, hidden, NETS[nets]["log_std_min"], NETS[nets]["scale"])
            self.critic = Critic(state_dim, hidden)
            self.target = Critic(state_dim, hidden)
            if nets == "authors":
                self.actor.apply(_xavier)
                self.critic.apply(_xavier)
        self.target.load_state_dict(self.critic.state_dict())
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=actor_lr, weight_decay=weight_decay)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=critic_lr, weight_decay=weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.replay = RecencyReplay(capacity, np.random.default_rng(seed))
        self.entropy, self.tau, self.gamma, self.batch_size = entropy, tau, gamma, batch_size
        self.actor_clip = actor_clip

    NETWORKS = ("actor", "critic", "target", "actor_opt", "critic_opt")

    def state(self):
        """Everything the agent learnt and its random state, as data."""
        return {**parts_state(self, self.NETWORKS),
                "generator": self.generator.get_state(), "replay": self.replay.state()}

    def load(self, state):
        """Go on from :meth:`state`'s values."""
        load_parts(self, self.NETWORKS, state)
        self.generator.set_state(state["generator"])
        self.replay.load(state["replay"])

    def _batch(self):
        if self.batch_size is not None:
            return self.replay.sample(self.batch_size)
        small, large, threshold = AUTHORS_BATCHES
        return self.replay.sample(large if len(self.replay) > threshold else small, replace=False)

    @torch.no_grad()
    def act(self, state, deterministic=False):
        action, _ = self.actor(torch.as_tensor(state)[None], self.generator, deterministic)
        return action[0].numpy().astype(np.float64)

    def learn(self):
        """One SAC update from the replay (no-op while it is empty)."""
        if not len(self.replay):
            return
        state, action, reward, next_state = self._batch()
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_state, self.generator)
            target_q = torch.min(*self.target(next_state, next_action)) - self.entropy * next_log_prob
            target = reward + self.gamma * target_q
        q1, q2 = self.critic(state, action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()

        new_action, log_prob = self.actor(state, self.generator)
        actor_loss = (self.entropy * log_prob - torch.min(*self.critic(state, new_action))).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        if self.actor_clip:
            nn.utils.clip_grad_norm_(self.actor.parameters(), self.actor_clip)
        self.actor_opt.step()

        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.target.parameters()):
                tp.mul_(1 - self.tau).add_(self.tau * p)
