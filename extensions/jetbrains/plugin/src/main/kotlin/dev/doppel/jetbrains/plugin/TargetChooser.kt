package dev.doppel.jetbrains.plugin

import com.intellij.openapi.actionSystem.ActionUpdateThread
import com.intellij.openapi.actionSystem.AnActionEvent
import com.intellij.openapi.application.ApplicationManager
import com.intellij.openapi.application.ModalityState
import com.intellij.openapi.project.DumbAwareAction
import com.intellij.openapi.project.Project
import com.intellij.openapi.ui.ComboBox
import com.intellij.openapi.ui.DialogWrapper
import com.intellij.openapi.ui.Messages
import com.intellij.ui.ColoredListCellRenderer
import com.intellij.ui.DocumentAdapter
import com.intellij.ui.SearchTextField
import com.intellij.ui.SimpleTextAttributes
import com.intellij.ui.components.JBList
import com.intellij.ui.components.JBScrollPane
import com.intellij.util.ui.JBUI
import dev.doppel.jetbrains.core.DoppelRpcException
import dev.doppel.jetbrains.core.ListTargetsParams
import dev.doppel.jetbrains.core.TargetChoice
import dev.doppel.jetbrains.core.TargetTree
import java.awt.BorderLayout
import javax.swing.DefaultListModel
import javax.swing.JComponent
import javax.swing.JList
import javax.swing.JPanel
import javax.swing.ListSelectionModel
import javax.swing.event.DocumentEvent

/**
 * The target chooser: a namespace box, a search field and the list of the core's [TargetTree]
 * ("No target" first, then the namespace's targets grouped by kind). The listing comes from
 * doppel/listTargets off the EDT.
 */
class TargetChooserDialog(project: Project, private var tree: TargetTree, current: TargetChoice, private val reload: (String?) -> TargetTree?) :
    DialogWrapper(project) {
    private val model = DefaultListModel<TargetTree.Item>()
    private val list = JBList(model)
    private val search = SearchTextField(false)
    private val namespace = ComboBox(tree.allNamespaces.ifEmpty { listOf(tree.currentNamespace) }.toTypedArray())

    init {
        title = "doppel: Choose the Target"
        list.selectionMode = ListSelectionModel.SINGLE_SELECTION
        list.cellRenderer = object : ColoredListCellRenderer<TargetTree.Item>() {
            override fun customizeCellRenderer(l: JList<out TargetTree.Item>, value: TargetTree.Item, index: Int, selected: Boolean, focus: Boolean) {
                append(value.label)
                append("  " + value.detail, SimpleTextAttributes.GRAYED_ATTRIBUTES)
            }
        }
        namespace.selectedItem = tree.currentNamespace
        namespace.addActionListener {
            val ns = namespace.selectedItem as? String
            if (ns != null && ns != tree.currentNamespace) reload(ns)?.let { tree = it; fill() }
        }
        search.addDocumentListener(object : DocumentAdapter() {
            override fun textChanged(e: DocumentEvent) = fill()
        })
        fill()
        tree.find(current)?.let { list.setSelectedValue(it, true) } ?: list.setSelectedIndex(0)
        init()
    }

    private fun fill() {
        val selected = list.selectedValue
        model.clear()
        tree.filter(search.text).forEach(model::addElement)
        if (selected != null && model.contains(selected)) list.setSelectedValue(selected, true) else if (!model.isEmpty) list.selectedIndex = 0
    }

    override fun createCenterPanel(): JComponent = JPanel(BorderLayout(0, JBUI.scale(6))).apply {
        add(JPanel(BorderLayout(JBUI.scale(6), 0)).apply {
            add(namespace, BorderLayout.WEST)
            add(search, BorderLayout.CENTER)
        }, BorderLayout.NORTH)
        add(JBScrollPane(list).apply { preferredSize = JBUI.size(520, 380) }, BorderLayout.CENTER)
    }

    override fun getPreferredFocusedComponent(): JComponent = search

    val choice: TargetChoice? get() = list.selectedValue?.choice
}

/** Tools | doppel | Choose Target… (also the status-bar widget's click). */
class ChooseTargetAction : DumbAwareAction() {
    override fun getActionUpdateThread() = ActionUpdateThread.BGT

    override fun update(e: AnActionEvent) {
        e.presentation.isEnabled = e.project != null
    }

    override fun actionPerformed(e: AnActionEvent) {
        val project = e.project ?: return
        choose(project)
    }

    companion object {
        fun choose(project: Project) {
            val service = DoppelService.of(project)
            fun load(ns: String?): TargetTree = TargetTree.of(service.client().listTargets(ListTargetsParams(namespace = ns)))
            ApplicationManager.getApplication().executeOnPooledThread {
                val first = runCatching { load(null) }
                ApplicationManager.getApplication().invokeLater({
                    first.onFailure { err ->
                        val msg = (err as? DoppelRpcException)?.message ?: err.toString()
                        Messages.showErrorDialog(project, msg, "doppel: Cannot List Targets")
                        return@invokeLater
                    }
                    val dialog = TargetChooserDialog(project, first.getOrThrow(), service.target) { ns ->
                        // The namespace switch: a short modal wait is acceptable in a dialog.
                        runCatching {
                            com.intellij.openapi.progress.ProgressManager.getInstance().runProcessWithProgressSynchronously<TargetTree, Exception>(
                                { load(ns) }, "doppel: Listing $ns", true, project,
                            )
                        }.getOrNull()
                    }
                    if (dialog.showAndGet()) {
                        dialog.choice?.let {
                            service.target = it
                            service.enabled = true
                        }
                    }
                }, ModalityState.nonModal())
            }
        }
    }
}

/** Tools | doppel | Toggle: run and debug under doppel, or not. */
class ToggleDoppelAction : DumbAwareAction() {
    override fun getActionUpdateThread() = ActionUpdateThread.BGT

    override fun update(e: AnActionEvent) {
        val project = e.project
        e.presentation.isEnabled = project != null
        if (project != null) e.presentation.text = if (DoppelService.of(project).enabled) "Turn doppel Off" else "Turn doppel On"
    }

    override fun actionPerformed(e: AnActionEvent) {
        val service = DoppelService.of(e.project ?: return)
        service.enabled = !service.enabled
    }
}
