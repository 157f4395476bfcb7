"""TD3 (twin delayed DDPG) for CIESS: one agent per side (users, items), one transition per entity.

The state of an entity is 3 numbers; the action is its width normalised to ``[-1, 1]``. The actor
is ``3→h→h→1`` with tanh; twin critics rate ``(state, action)``; target networks follow by Polyak
averaging; the actor learns every ``policy_delay`` critic steps; target actions are smoothed with
clipped noise (one scalar per update with ``scalar_target_noise``, as the authors' ``Buffer.py``;
else one per sampled row); ``grad_clip`` bounds both networks' gradient norms (authors: 0.01).
``authors`` switches the remaining bookkeeping to the authors' code: no terminal mask (their buffer
has no ``done``), the critics' targets follow after every update and the actor's only after its
own, the walk is scored by Q1 alone, and the actor's last layer starts within ±3e-3 (``ActorCritic.py``).
All randomness comes from the agent's own seeded generators, never from torch's global RNG.
"""

import copy

import numpy as np
import torch
from torch import nn

from recbole_lightemb.storage.run_state import load_parts, parts_state

STATE_DIM = 3


def _mlp(n_in, hidden, out_act=None):
    layers = [nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)]
    return nn.Sequential(*layers, *([out_act] if out_act else []))


class ReplayBuffer:
    """A ring buffer of ``(state, action, reward, next_state, done)`` rows, sampled uniformly."""

    def __init__(self, capacity, rng):
        self.capacity = int(capacity)
        self.rng = rng
        self.data = np.zeros((self.capacity, 2 * STATE_DIM + 3), dtype=np.float32)
        self.size = 0
        self.head = 0

    def add(self, state, action, reward, next_state, done):
        rows = np.column_stack([state, action, reward, next_state, np.full(len(reward), float(done))])
        rows = rows[-self.capacity:]
        index = (self.head + np.arange(len(rows))) % self.capacity
        self.data[index] = rows
        self.head = (self.head + len(rows)) % self.capacity
        self.size = min(self.size + len(rows), self.capacity)

    def state(self):
        """The buffer as data: its rows (a tensor), fill, head and generator state."""
        return {"rows": torch.from_numpy(self.data.copy()), "size": self.size, "head": self.head,
                "rng": self.rng.bit_generator.state}

    def load(self, state):
        rows = state["rows"]
        if tuple(rows.shape) != self.data.shape:
            raise ValueError(f"replay buffer of {tuple(rows.shape)} rows, expected {self.data.shape}")
        self.data[:] = rows.numpy()
        self.size, self.head = int(state["size"]), int(state["head"])
        self.rng.bit_generator.state = state["rng"]

    def sample(self, batch_size):
        rows = torch.from_numpy(self.data[self.rng.integers(0, self.size, batch_size)])
        s, a, r, s2, done = torch.split(rows, [STATE_DIM, 1, 1, STATE_DIM, 1], dim=1)
        return s, a, r, s2, done


class TD3Agent:
    """Actor, twin critics and their targets, trained from a replay buffer."""

    def __init__(self, seed, hidden=256, actor_lr=1e-3, critic_lr=3e-3, tau=0.005, gamma=0.99,
                 policy_delay=2, policy_noise=0.2, noise_clip=0.5, batch_size=4096, buffer_size=1_000_000,
                 grad_clip=None, scalar_target_noise=False, authors=False):
        with torch.random.fork_rng(devices=[]):  # seeded init that leaves torch's global RNG alone
            torch.manual_seed(seed)
            self.actor = _mlp(STATE_DIM, hidden, nn.Tanh())
            self.critics = nn.ModuleList([_mlp(STATE_DIM + 1, hidden), _mlp(STATE_DIM + 1, hidden)])
            if authors:
                nn.init.uniform_(self.actor[-2].weight, -3e-3, 3e-3)
        self.actor_target = copy.deepcopy(self.actor)
        self.critics_target = copy.deepcopy(self.critics)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=actor_lr)
        self.critic_opt = torch.optim.Adam(self.critics.parameters(), lr=critic_lr)
        self.tau, self.gamma, self.policy_delay = tau, gamma, policy_delay
        self.policy_noise, self.noise_clip, self.batch_size = policy_noise, noise_clip, batch_size
        self.grad_clip, self.scalar_target_noise, self.authors = grad_clip, scalar_target_noise, authors
        self.generator = torch.Generator().manual_seed(seed)
        self.buffer = ReplayBuffer(buffer_size, np.random.default_rng(seed))
        self.updates = 0

    NETWORKS = ("actor", "critics", "actor_target", "critics_target", "actor_opt", "critic_opt")

    def state(self):
        """Everything the agent learnt and its random state, as data (tensors, numbers, dicts)."""
        return {**parts_state(self, self.NETWORKS), "generator": self.generator.get_state(),
                "buffer": self.buffer.state(), "updates": self.updates}

    def load(self, state):
        """Go on from :meth:`state`'s values."""
        load_parts(self, self.NETWORKS, state)
        self.generator.set_state(state["generator"])
        self.buffer.load(state["buffer"])
        self.updates = int(state["updates"])

    @torch.no_grad()
    def act(self, states):
        """Normalised actions in ``[-1, 1]`` for an ``(n, 3)`` array of states."""
        return self.actor(torch.as_tensor(states, dtype=torch.float32)).squeeze(1).numpy()

    @torch.no_grad()
    def value(self, states, actions):
        """How the walk rates ``(n, 3)`` states with ``(n,)`` actions: ``min(Q1, Q2)``, or Q1 (``authors``)."""
        x = torch.cat([torch.as_tensor(states, dtype=torch.float32),
                       torch.as_tensor(actions, dtype=torch.float32)[:, None]], dim=1)
        q1 = self.critics[0](x)
        return (q1 if self.authors else torch.minimum(q1, self.critics[1](x))).squeeze(1).numpy()

    def remember(self, states, actions, rewards, next_states, done):
        self.buffer.add(states, actions, rewards, next_states, done)

    def learn(self, n_updates):
        """``n_updates`` TD3 critic steps (and every ``policy_delay``-th, an actor step); mean critic loss."""
        losses = []
        for _ in range(n_updates if self.buffer.size else 0):
            losses.append(self._update())
        return float(np.mean(losses)) if losses else float("nan")

    def _update(self):
        s, a, r, s2, done = self.buffer.sample(self.batch_size)
        with torch.no_grad():
            shape = (1,) if self.scalar_target_noise else a.shape
            noise = (torch.randn(shape, generator=self.generator) * self.policy_noise).clamp(
                -self.noise_clip, self.noise_clip)
            a2 = (self.actor_target(s2) + noise).clamp(-1.0, 1.0)
            x2 = torch.cat([s2, a2], dim=1)
            q_next = torch.minimum(self.critics_target[0](x2), self.critics_target[1](x2))
            target = r + self.gamma * (1.0 if self.authors else 1.0 - done) * q_next
        x = torch.cat([s, a], dim=1)
        critic_loss = sum(nn.functional.mse_loss(critic(x), target) for critic in self.critics)
        self._step(self.critic_opt, self.critics, critic_loss)
        self.updates += 1
        if self.updates % self.policy_delay == 0:
            actor_loss = -self.critics[0](torch.cat([s, self.actor(s)], dim=1)).mean()
            self._step(self.actor_opt, self.actor, actor_loss)
            self._soft_update(self.actor, self.actor_target)
            if not self.authors:
                self._soft_update(self.critics, self.critics_target)
        if self.authors:
            self._soft_update(self.critics, self.critics_target)
        return critic_loss.item()

    def _step(self, optimizer, network, loss):
        optimizer.zero_grad()
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(network.parameters(), self.grad_clip)
        optimizer.step()

    @torch.no_grad()
    def _soft_update(self, source, target):
        for p, p_target in zip(source.parameters(), target.parameters()):
            p_target.mul_(1.0 - self.tau).add_(p, alpha=self.tau)
