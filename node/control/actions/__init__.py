"""The closed loop's actions: executors for :class:`node.control.outbox.ActionRunner`.

One module per peer: ``plc`` (OPC UA compensation and line stop, over ``plc_client``),
``mqtt_command`` (line commands over MQTT), ``erp`` (purchase-order pause/release by signed
webhook), ``tasks`` (the task board, supplier and improvement tasks, their notifications).
"""
