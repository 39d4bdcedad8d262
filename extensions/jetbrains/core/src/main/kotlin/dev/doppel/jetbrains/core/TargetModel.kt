package dev.doppel.jetbrains.core

/**
 * What the user picked in the target chooser. Stored per project as a string ([encode]).
 */
sealed class TargetChoice {
    /** Nothing picked: the config file's target (resolveLaunch without `target`). */
    object FromConfig : TargetChoice() {
        override fun toString() = "the config file's target"
    }

    /** "No target": the process runs against the cluster without a pod to mirror (`"targetless"`). */
    object NoTarget : TargetChoice() {
        override fun toString() = "no target"
    }

    data class Target(val path: String, val namespace: String?) : TargetChoice() {
        override fun toString() = if (namespace.isNullOrEmpty()) path else "$namespace/$path"
    }

    /** The `target` member of resolveLaunch. */
    val targetParam: String?
        get() = when (this) {
            FromConfig -> null
            NoTarget -> TARGETLESS
            is Target -> path
        }

    /** The `namespace` member of resolveLaunch. */
    val namespaceParam: String? get() = (this as? Target)?.namespace?.ifEmpty { null }

    fun encode(): String = when (this) {
        FromConfig -> ""
        NoTarget -> TARGETLESS
        is Target -> if (namespace.isNullOrEmpty()) path else "$namespace:$path"
    }

    companion object {
        const val TARGETLESS = "targetless"

        fun decode(s: String?): TargetChoice {
            if (s.isNullOrBlank()) return FromConfig
            if (s == TARGETLESS) return NoTarget
            val colon = s.indexOf(':')
            return if (colon > 0) Target(s.substring(colon + 1), s.substring(0, colon)) else Target(s, null)
        }
    }
}

/**
 * The picker's tree: namespaces → kinds → targets, plus "no target" on top. Kinds are in the
 * order a developer looks for them (deployments first, single pods last); targets by name.
 */
class TargetTree(
    /** Namespaces with targets (the listed one first), each with its kinds. */
    val namespaces: List<NamespaceNode>,
    /** The namespace listed: the one asked, else the context's. */
    val currentNamespace: String,
    /** Every namespace the cluster has, for a namespace switcher. */
    val allNamespaces: List<String>,
    val warnings: List<String>,
) {
    data class NamespaceNode(val name: String, val kinds: List<KindNode>) {
        val targetCount: Int get() = kinds.sumOf { it.targets.size }
    }

    data class KindNode(val kind: String, val targets: List<TargetInfo>) {
        /** "deployments", "pods", … for the tree's group label. */
        val label: String get() = plural(kind)
    }

    /** Every entry of the flat list a quick picker shows: "no target" first. */
    fun items(): List<Item> = buildList {
        add(Item.NoTarget)
        for (ns in namespaces) for (k in ns.kinds) for (t in k.targets) add(Item.Target(t))
    }

    /** Targets whose path, name or namespace contains [query] (case-insensitive); "no target" matches "no target" and "targetless". */
    fun filter(query: String): List<Item> {
        val q = query.trim().lowercase()
        if (q.isEmpty()) return items()
        return items().filter { item ->
            when (item) {
                Item.NoTarget -> "no target".contains(q) || TargetChoice.TARGETLESS.contains(q)
                is Item.Target -> item.target.path.lowercase().contains(q) || item.target.namespace.lowercase().contains(q)
            }
        }
    }

    fun find(choice: TargetChoice): Item? = when (choice) {
        TargetChoice.FromConfig -> null
        TargetChoice.NoTarget -> Item.NoTarget
        is TargetChoice.Target -> items().filterIsInstance<Item.Target>().firstOrNull {
            it.target.path == choice.path && (choice.namespace.isNullOrEmpty() || it.target.namespace == choice.namespace)
        }
    }

    sealed class Item {
        abstract val label: String
        abstract val detail: String
        abstract val choice: TargetChoice

        object NoTarget : Item() {
            override val label = "No target"
            override val detail = "run against the cluster without mirroring a pod"
            override val choice: TargetChoice = TargetChoice.NoTarget
        }

        data class Target(val target: TargetInfo) : Item() {
            override val label: String get() = target.path
            override val detail: String
                get() = buildString {
                    append(target.namespace)
                    if (target.pods > 0) append(" · ${target.readyPods}/${target.pods} ready") else if (!target.ready) append(" · not ready")
                    if (target.containers.size > 1) append(" · ${target.containers.joinToString(", ")}")
                }
            override val choice: TargetChoice get() = TargetChoice.Target(target.path, target.namespace)
        }
    }

    companion object {
        /** The order of kinds in the picker; others follow alphabetically. */
        val KIND_ORDER = listOf("deployment", "statefulset", "daemonset", "rollout", "job", "cronjob", "service", "replicaset", "pod")

        fun of(res: ListTargetsResult): TargetTree {
            val byNs = res.targets.groupBy { it.namespace }
            // Namespaces with targets, plus the listed ones (empty), the current one first.
            val names = LinkedHashSet<String>()
            if (res.namespace.isNotEmpty() && byNs.containsKey(res.namespace)) names.add(res.namespace)
            names.addAll(byNs.keys.sorted())
            val nodes = names.map { ns ->
                val kinds = (byNs[ns] ?: emptyList()).groupBy { it.kind }
                    .map { (kind, ts) -> KindNode(kind, ts.sortedBy { it.name }) }
                    .sortedWith(compareBy<KindNode>({ kindRank(it.kind) }, { it.kind }))
                NamespaceNode(ns, kinds)
            }
            return TargetTree(nodes, res.namespace, res.namespaces.sorted(), res.warnings)
        }

        private fun kindRank(kind: String): Int = KIND_ORDER.indexOf(kind).let { if (it < 0) KIND_ORDER.size else it }

        fun plural(kind: String): String = when {
            kind.endsWith("s") -> kind + "es"
            kind.endsWith("y") -> kind.dropLast(1) + "ies"
            else -> kind + "s"
        }
    }
}
