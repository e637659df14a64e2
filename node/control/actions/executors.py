"""The executors a node's ``[control]`` settings call for, keyed by action kind, for one
:class:`~node.control.outbox.ActionRunner`; and the connections they hold, closed together."""

from __future__ import annotations

from pathlib import Path

from node.control.actions.erp import KIND_PAUSE, KIND_RELEASE, ErpPurchaseOrderExecutor
from node.control.actions.mqtt_command import KIND_MQTT_COMMAND, MqttCommandExecutor
from node.control.actions.mqtt_link import MqttLink
from node.control.actions.plc import (
    KIND_COMPENSATION,
    KIND_STOP,
    PlcCompensationExecutor,
    PlcStopExecutor,
)
from node.control.actions.plc_client import PlcClient
from node.control.actions.tasks import (
    KIND_IMPROVEMENT_TASK,
    KIND_SUPPLIER_TASK,
    ImprovementTaskExecutor,
    MqttTaskNotifier,
    SupplierTaskExecutor,
    TaskBoard,
    TaskNotifier,
    WebhookTaskNotifier,
)
from node.control.actions.webhook import SignedWebhook
from node.control.outbox import Executor
from node.offchain.store import Store
from node.settings import ControlSettings


class ActionExecutors:
    """``executors`` for the runner; ``plc`` for the line-stop fast path (None without a
    ``[control.plc]``); ``board`` for the portal. ``await aclose()`` at shutdown.

    Kinds without their settings (no PLC, no ERP, no MQTT command broker) get no executor, so
    their actions wait in the outbox until the node is configured for them.
    """

    def __init__(
        self, settings: ControlSettings, store: Store, *, base_dir: Path | None = None
    ) -> None:
        self.board = TaskBoard(store)
        self.executors: dict[str, Executor] = {}
        self.plc: PlcClient | None = None
        self._mqtt_command: MqttCommandExecutor | None = None
        self._webhooks: list[SignedWebhook] = []
        self._links: list[MqttLink] = []
        if settings.plc is not None:
            self.plc = PlcClient(settings.plc, base_dir=base_dir)
            self.executors[KIND_COMPENSATION] = PlcCompensationExecutor(self.plc)
            self.executors[KIND_STOP] = PlcStopExecutor(self.plc)
        if settings.mqtt_command is not None:
            self._mqtt_command = MqttCommandExecutor(settings.mqtt_command, base_dir=base_dir)
            self.executors[KIND_MQTT_COMMAND] = self._mqtt_command
        if settings.erp is not None:
            erp = SignedWebhook(settings.erp, name="ERP", base_dir=base_dir)
            self._webhooks.append(erp)
            self.executors[KIND_PAUSE] = self.executors[KIND_RELEASE] = ErpPurchaseOrderExecutor(
                erp
            )
        tasks = settings.tasks
        webhook = self._task_webhook(settings, base_dir)
        link = self._task_link(settings, base_dir)
        supplier_notifier: TaskNotifier | None = None
        improvement_notifier: TaskNotifier | None = None
        if tasks.supplier_channel == "webhook" and webhook is not None:
            supplier_notifier = WebhookTaskNotifier(webhook, tasks.supplier_webhooks)
        elif tasks.supplier_channel == "mqtt" and link is not None:
            supplier_notifier = MqttTaskNotifier(link, tasks.supplier_topic)
        if tasks.improvement_channel == "webhook" and webhook is not None:
            improvement_notifier = WebhookTaskNotifier(webhook)
        elif tasks.improvement_channel == "mqtt" and link is not None:
            improvement_notifier = MqttTaskNotifier(link, tasks.assignee_topic)
        self.executors[KIND_SUPPLIER_TASK] = SupplierTaskExecutor(self.board, supplier_notifier)
        self.executors[KIND_IMPROVEMENT_TASK] = ImprovementTaskExecutor(
            self.board, improvement_notifier
        )

    def _task_webhook(
        self, settings: ControlSettings, base_dir: Path | None
    ) -> SignedWebhook | None:
        tasks = settings.tasks
        if tasks.webhook is None or "webhook" not in (
            tasks.supplier_channel,
            tasks.improvement_channel,
        ):
            return None
        webhook = SignedWebhook(tasks.webhook, name="task webhook", base_dir=base_dir)
        self._webhooks.append(webhook)
        return webhook

    def _task_link(self, settings: ControlSettings, base_dir: Path | None) -> MqttLink | None:
        tasks = settings.tasks
        if tasks.mqtt is None or "mqtt" not in (tasks.supplier_channel, tasks.improvement_channel):
            return None
        link = MqttLink(tasks.mqtt, base_dir=base_dir)
        self._links.append(link)
        return link

    async def aclose(self) -> None:
        if self.plc is not None:
            await self.plc.close()
        if self._mqtt_command is not None:
            await self._mqtt_command.aclose()
        for webhook in self._webhooks:
            await webhook.aclose()
        for link in self._links:
            await link.aclose()
