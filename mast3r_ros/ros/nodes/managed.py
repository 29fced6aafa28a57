"""One node body, run two ways: a plain node that configures and activates itself at start-up, or a
managed ``rclpy.lifecycle`` node whose transitions nav2's lifecycle_manager drives (``--lifecycle``).

A body (a subclass of :class:`Stages`) implements four hooks, and both variants call the same ones:

- ``_configure()``: parameters, model, map. Raises with the reason on failure (a bad map).
- ``_activate()``: subscriptions, publishers, TF, timers, services. Every entity created here is
  destroyed at deactivate (so nothing is published while inactive), found by comparing the node's
  entity lists before and after.
- ``_deactivate()``: stop processing before those entities go (in-flight outputs are dropped).
- ``_release()``: drop what ``_configure`` made (model, map), back to unconfigured.

A failing transition returns FAILURE with a one-line logged reason and leaves the node in the state it
came from (what nav2's lifecycle_manager expects); shutdown tears down from any state.
"""
from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def _entities(node) -> set:
    return {*node.subscriptions, *node.publishers, *node.timers, *node.services, *node.clients}


def _destroy(node, entity) -> None:
    for kind, destroy in (("subscriptions", node.destroy_subscription), ("publishers", node.destroy_publisher),
                          ("timers", node.destroy_timer), ("services", node.destroy_service),
                          ("clients", node.destroy_client)):
        if entity in set(getattr(node, kind)):
            destroy(entity)
            return


class Stages:
    """Configure/activate/deactivate/cleanup of a node body (mixed into a Node or a LifecycleNode)."""

    def _configure(self) -> None:
        raise NotImplementedError

    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _setup(self) -> None:
        """What the node has in every state (e.g. the parameter validator); runs once, first."""

    def _init_stages(self) -> None:
        self._configured = False
        self._active_entities: set | None = None  # None while not active
        self._setup()

    # ------------------------------------------------------------ the steps, shared by both variants
    def bring_up(self) -> None:
        """Plain node: configure and activate now; an exception says why the node cannot start."""
        self._init_stages()
        self.configure_step()
        try:
            self.activate_step()
        except BaseException:
            self.cleanup_step()
            raise

    def configure_step(self) -> None:
        try:
            self._configure()
        except BaseException:
            self._release()  # whatever was made before the failure
            raise
        self._configured = True

    def activate_step(self) -> None:
        before = _entities(self)
        try:
            self._activate()
        except BaseException:
            self._active_entities = _entities(self) - before
            self.deactivate_step()
            raise
        self._active_entities = _entities(self) - before

    def deactivate_step(self) -> None:
        if self._active_entities is None:
            return
        self._deactivate()
        for entity in self._active_entities:
            _destroy(self, entity)
        self._active_entities = None

    def cleanup_step(self) -> None:
        if self._configured:
            self._release()
            self._configured = False

    def teardown(self) -> None:
        """From any state to nothing (shutdown, destroy_node, Ctrl-C)."""
        self.deactivate_step()
        self.cleanup_step()

    def destroy_node(self) -> None:
        self.teardown()
        super().destroy_node()

    # ------------------------------------------------------------ lifecycle callbacks (managed variant)
    def _transition(self, what: str, step) -> TransitionCallbackReturn:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - a failed transition is answered, never fatal
            self.get_logger().error(f"{what} failed: {type(exc).__name__}: {exc}")
            return FAILURE
        self.get_logger().info(f"{what}: done")
        return SUCCESS

    def on_configure(self, state) -> TransitionCallbackReturn:
        return self._transition("configure", self.configure_step)

    def on_activate(self, state) -> TransitionCallbackReturn:
        return self._transition("activate", self.activate_step)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        return self._transition("deactivate", self.deactivate_step)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        return self._transition("cleanup", self.cleanup_step)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        return self._transition("shutdown", self.teardown)

    def on_error(self, state) -> TransitionCallbackReturn:
        self.teardown()  # back to unconfigured, nothing held
        return SUCCESS


class PlainNode(Node):
    """A body (a :class:`Stages` with ``NODE_NAME``) run as a plain node: configured and activated in
    the constructor, which raises on failure."""

    def __init__(self, **kwargs):
        super().__init__(self.NODE_NAME, **kwargs)
        self.bring_up()


class ManagedNode(LifecycleNode):
    """A body run as a managed node: starts unconfigured; transitions over ``<node>/change_state``."""

    def __init__(self, **kwargs):
        super().__init__(self.NODE_NAME, **kwargs)
        self._init_stages()
        self.get_logger().info(f"managed node: unconfigured; configure and activate it over "
                               f"{self.get_fully_qualified_name()}/change_state (e.g. nav2's lifecycle_manager)")
